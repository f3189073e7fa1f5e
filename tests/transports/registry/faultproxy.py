"""An HTTP proxy on 127.0.0.1 in front of a real registry that injects the faults a real registry cannot make.

Faults are matched by method and a path substring and used up one by one: answer a status (500, 429 with
Retry-After), drop the connection halfway through a body, flip a byte of the body, or fall silent halfway
through a body with the connection open (until `seconds` pass or the proxy stops).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "content-length", "host"}  # fmt: skip


@dataclass
class Fault:
    method: str
    path_contains: str
    kind: str  # "status", "drop", "corrupt", "corrupt-tail", "delay" (answer normally after `seconds`), "stall"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    seconds: float = 0.0


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status sent)
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> None:
        self.faults.append(fault)

    def _take(self, method: str, path: str) -> Fault | None:
        for f in self.faults:
            if f.times > 0 and f.method == method and f.path_contains in path:
                f.times -= 1
                return f
        return None

    def start(self) -> None:
        proxy = self
        session = requests.Session()
        session.trust_env = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                with proxy._lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    self._forward()
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1

            def _forward(self) -> None:
                method, path = self.command, self.path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take(method, path)
                if fault is not None and fault.kind == "status":
                    proxy.seen.append((method, path, fault.status))
                    self.send_response(fault.status)
                    for k, v in fault.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                resp = session.request(
                    method, proxy.upstream + path, headers=headers, data=body, allow_redirects=False, timeout=30
                )
                data = resp.content
                if fault is not None and fault.kind == "corrupt" and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                if fault is not None and fault.kind == "corrupt-tail" and data:  # (a tar's padding: still readable)
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                proxy.seen.append((method, path, resp.status_code))
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in _HOP:
                        continue
                    if k.lower() == "location":
                        v = v.replace(proxy.upstream, f"http://{proxy.address}")
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method == "HEAD":
                    return
                if fault is not None and fault.kind in ("drop", "stall"):
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if fault.kind == "stall":
                        proxy._stopping.wait(fault.seconds)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
