"""The worker: takes jobs from the Redis list `jobs` and records each one in PostgreSQL."""
import db
from redisq import Redis

if __name__ == "__main__":
    db.ensure_schema()
    queue = Redis()
    print("worker: waiting for jobs", flush=True)
    while True:
        item = queue.call("BRPOP", "jobs", 5)
        if item is None:
            continue
        _, job = item
        db.sql("INSERT INTO jobs_done (job) VALUES (:'v1')", job)
        print(f"worker: processed {job}", flush=True)
