"""The frontend: a page that shows the API's numbers, fetched over the private network."""
import html
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = os.environ["API_URL"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body, kind = b"ok", "text/plain"
        else:
            try:
                with urllib.request.urlopen(API, timeout=10) as r:
                    stats = json.load(r)
                text = f"{stats['jobs_done']} jobs done, {stats['queued']} queued, last: {stats['last_job'] or 'none'}"
            except Exception as e:  # the page still renders while the API starts
                text = f"the API is not answering yet ({e})"
            body = f"<!doctype html><title>Stack</title><h1>Production app</h1><p id=stats>{html.escape(text)}</p>".encode()
            kind = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("request:", fmt % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"frontend listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
