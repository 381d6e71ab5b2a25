"""The API: enqueues jobs on Redis (POST /jobs) and reports what the worker has done (GET /)."""
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import db
from redisq import Redis


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, payload):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"ok": True})
        rows = db.sql("SELECT count(*), coalesce(max(job), '') FROM jobs_done")
        done, last = rows[0]
        queued = Redis().call("LLEN", "jobs")
        self.reply(200, {"jobs_done": int(done), "last_job": last, "queued": queued})

    def do_POST(self):
        if self.path != "/jobs":
            return self.reply(404, {"error": "not found"})
        job = f"api-{time.time_ns()}"
        Redis().call("LPUSH", "jobs", job)
        print(f"api: enqueued {job}", flush=True)
        self.reply(202, {"job": job})

    def log_message(self, fmt, *args):
        print("request:", fmt % args, flush=True)


if __name__ == "__main__":
    db.ensure_schema()
    port = int(os.environ.get("PORT", "8080"))
    print(f"api listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
