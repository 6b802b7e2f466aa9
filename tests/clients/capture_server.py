#!/usr/bin/env python3
"""Debugging stand-in for Whisperer: records what the client libraries send.

Accepts POST on any path, gunzips Content-Encoding: gzip bodies, checks that
HTTP Basic auth carries the write key as user name, and answers 200
{"success": true} (401 on a wrong key, 400 on a body that is not JSON;
--reply-status/--reply-body change the success answer to probe client quirks).
Each request is appended as one JSON line (method, path, headers, auth user,
gzip flag, decoded body) to the file given by --out (default: stdout).

    python3 tests/clients/capture_server.py --port 18080 --write-key KEY --out /tmp/cap.jsonl

Standard library only; prints "listening on http://127.0.0.1:PORT" when ready
(--port 0 picks a free port).
"""
import argparse
import base64
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--write-key", required=True)
    ap.add_argument("--out", default="-")
    ap.add_argument("--reply-status", type=int, default=200,
                    help="status for accepted requests (to probe client quirks)")
    ap.add_argument("--reply-body", default='{"success": true}',
                    help="raw body for accepted requests")
    args = ap.parse_args()
    out = sys.stdout if args.out == "-" else open(args.out, "a", buffering=1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the libraries expect

        def log_message(self, *a):
            pass

        def reply(self, status, obj):
            data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
            if status in (204, 304):
                data = b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            gz = self.headers.get("Content-Encoding", "").lower() == "gzip"
            auth_user = None
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    auth_user = base64.b64decode(auth[6:]).decode().partition(":")[0]
                except ValueError:
                    pass
            rec = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "auth_user": auth_user,
                "gzip": gz,
                "raw_len": len(raw),
            }
            status, answer = args.reply_status, args.reply_body
            try:
                rec["body"] = json.loads(gzip.decompress(raw) if gz else raw)
            except (ValueError, OSError) as e:
                rec["body_error"] = str(e)
                status, answer = 400, {"code": "bad_request", "message": str(e)}
            if auth_user != args.write_key:
                status, answer = 401, {"code": "unauthorized", "message": "bad write key"}
            rec["status"] = status
            with lock:
                out.write(json.dumps(rec) + "\n")
            self.reply(status, answer)

        def do_GET(self):
            self.reply(405, {"code": "method_not_allowed", "message": "POST only"})

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
