"""Just enough of the Redis protocol (RESP) for a job queue, on the standard library."""
import os
import socket
from urllib.parse import urlparse


class Redis:
    def __init__(self, url=None):
        u = urlparse(url or os.environ["REDIS_URL"])
        self.sock = socket.create_connection((u.hostname, u.port or 6379), timeout=30)
        self.file = self.sock.makefile("rb")
        if u.password:
            self.call("AUTH", u.username or "default", u.password)

    def call(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")
