"""The scheduler's job, run on its cron schedule: enqueue one job and exit."""
import time

from redisq import Redis

if __name__ == "__main__":
    job = f"scheduled-{time.time_ns()}"
    Redis().call("LPUSH", "jobs", job)
    print(f"scheduler: enqueued {job}", flush=True)
