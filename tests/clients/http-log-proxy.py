#!/usr/bin/env python3
"""A logging reverse proxy for looking at what registry clients send.

  tests/clients/http-log-proxy.py LISTEN UPSTREAM LOG.jsonl [--relative-location]
                                  [--strip-api-version] [--refuse-mount]

e.g. `http-log-proxy.py 127.0.0.1:5002 127.0.0.1:5001 /tmp/http.jsonl`, then
run a client script against 127.0.0.1:5002. One JSON line per exchange:
method, path, body size, whether the request body came chunked, the
interesting request headers (every Accept line kept), the status and the
interesting response headers; the start of each manifest PUT.

--relative-location rewrites absolute Location headers to paths, and
--strip-api-version drops Docker-Distribution-Api-Version, to check that
clients do without them. --refuse-mount answers cross-repository mounts with
a plain upload session (202), as a registry that does not mount would.
Bodies are buffered: for small test images only.
Not used by the tests themselves.
"""
import http.client
import http.server
import json
import socketserver
import sys
import threading
import time

REQ_H = ["Accept", "Content-Type", "Content-Length", "Transfer-Encoding", "Content-Range",
         "Range", "User-Agent", "Expect"]
RESP_H = ["Content-Type", "Content-Length", "Location", "Docker-Content-Digest", "Range",
          "OCI-Filters-Applied", "OCI-Subject", "Docker-Upload-UUID"]
HOP = ("transfer-encoding", "content-length", "expect", "connection")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if len(args) != 3:
        sys.exit(__doc__)
    listen, upstream, log_path = args
    log = open(log_path, "a", buffering=1)
    lock = threading.Lock()
    up_host, up_port = upstream.rsplit(":", 1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    n = int(self.rfile.readline().split(b";")[0], 16)
                    if n == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out, True
                    out += self.rfile.read(n)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length", 0) or 0)
            return (self.rfile.read(n) if n else b""), False

        def forward(self):
            if self.headers.get("Expect", "").lower() == "100-continue":
                self.send_response_only(100)
                self.end_headers()
            data, chunked = self.read_body()
            path = self.path
            if "--refuse-mount" in flags and self.command == "POST" and "mount=" in path:
                path = path.split("?", 1)[0]
            c = http.client.HTTPConnection(up_host, int(up_port), timeout=120)
            c.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    c.putheader(k, v)
            if data or self.command in ("PUT", "POST", "PATCH"):
                c.putheader("Content-Length", str(len(data)))
            c.endheaders(data if data else None)
            r = c.getresponse()
            rb = r.read()
            entry = {
                "t": round(time.time(), 3), "m": self.command, "p": self.path,
                "body": len(data), "chunked_req": chunked,
                "req": {k: self.headers.get_all(k) for k in REQ_H if k in self.headers},
                "status": r.status,
                "resp": {k: r.getheader(k) for k in RESP_H if r.getheader(k)},
            }
            if self.command == "PUT" and "/manifests/" in self.path:
                entry["manifest_start"] = data[:400].decode("utf-8", "replace")
            with lock:
                log.write(json.dumps(entry) + "\n")
            self.send_response(r.status)
            for k, v in r.getheaders():
                lk = k.lower()
                if lk in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    continue
                if lk == "location" and "--relative-location" in flags and v.startswith("http"):
                    v = "/" + v.split("/", 3)[3]
                if lk == "docker-distribution-api-version" and "--strip-api-version" in flags:
                    continue
                self.send_header(k, v)
            length = r.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(rb))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(rb)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    host, port = listen.rsplit(":", 1)
    Server((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
