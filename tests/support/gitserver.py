"""Git servers on 127.0.0.1 for the tests: ``git daemon`` (git's own protocol) and ``git http-backend`` behind a
small HTTP server (Python's http.server in a thread, optionally with basic auth), plus test repositories made
with the git command. Nothing here uses kiln."""

from __future__ import annotations

import base64
import http.server
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.procs import run, run_text, stop

GIT_ENV = {
    "GIT_AUTHOR_NAME": "kiln tests", "GIT_AUTHOR_EMAIL": "tests@kiln.invalid",
    "GIT_COMMITTER_NAME": "kiln tests", "GIT_COMMITTER_EMAIL": "tests@kiln.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    return run_text(["git", *args], cwd=cwd, env=GIT_ENV).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Repo:
    """A bare repository under a server root, and what its refs hold."""

    bare: Path
    name: str  # path under the server root, e.g. "app.git"
    commits: dict[str, str] = field(default_factory=dict)  # label -> commit id
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> {path: content}


def _write_tree(work: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _commit(work: Path, message: str, when: int) -> str:
    git("add", "-A", cwd=work)
    env_date = f"{when} +0000"
    run(["git", "commit", "-q", "-m", message], cwd=work,
        env={**GIT_ENV, "GIT_AUTHOR_DATE": env_date, "GIT_COMMITTER_DATE": env_date})
    return git("rev-parse", "HEAD", cwd=work)


def make_repo(root: Path, name: str, versions: list[tuple[str, dict[str, str]]], *,
              branches: dict[str, int] | None = None, tags: dict[str, int] | None = None,
              annotated: dict[str, int] | None = None, submodule: tuple[str, str] | None = None) -> Repo:
    """A bare repository ``root/name`` whose main branch has one commit per version (label, files added or
    changed); ``branches``/``tags``/``annotated`` name versions by index. ``submodule`` = (path, url) is added
    in the last version."""
    work = root / f".work-{name}"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", work)
    repo = Repo(root / name, name)
    current: dict[str, str] = {}
    for i, (label, files) in enumerate(versions):
        _write_tree(work, files)
        current.update(files)
        if submodule is not None and i == len(versions) - 1:
            path, url = submodule
            run(["git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path], cwd=work,
                env=GIT_ENV)
        repo.commits[label] = _commit(work, label, 1_700_000_000 + i * 1000)
        repo.trees[label] = dict(current)
    labels = [label for label, _ in versions]
    for branch, idx in (branches or {}).items():
        git("branch", branch, repo.commits[labels[idx]], cwd=work)
    for tag, idx in (tags or {}).items():
        git("tag", tag, repo.commits[labels[idx]], cwd=work)
    for tag, idx in (annotated or {}).items():
        git("tag", "-a", "-m", tag, tag, repo.commits[labels[idx]], cwd=work)
    git("clone", "-q", "--bare", work, repo.bare)
    git("config", "http.receivepack", "false", cwd=repo.bare)
    git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=repo.bare)
    run(["rm", "-rf", str(work)])
    return repo


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """``git daemon`` serving every repository under ``base`` on 127.0.0.1: yields git://127.0.0.1:PORT."""
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}", "--listen=127.0.0.1",
         f"--port={port}", "--informative-errors", str(base)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **GIT_ENV},
    )
    try:
        wait_port(port, proc)
        yield f"git://127.0.0.1:{port}"
    finally:
        stop(proc)


class _GitHttpHandler(http.server.BaseHTTPRequestHandler):
    server: _GitHttpServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        srv = self.server
        auth = self.headers.get("Authorization")
        srv.seen_auth.append(auth)
        if srv.credentials is not None:
            user, password = srv.credentials
            want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if auth != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="kiln tests"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        static = srv.static / path.lstrip("/")
        if self.command == "GET" and srv.static_dir is not None and static.is_file():
            data = static.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(srv.root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if srv.credentials is not None:
            env["REMOTE_USER"] = srv.credentials[0]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        if srv.before_reply is not None:
            srv.before_reply(self.command, path)  # the answer is made, not sent: a client sees the world before it
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GitHttpServer(http.server.ThreadingHTTPServer):
    def __init__(self, root: Path, credentials: tuple[str, str] | None, static_dir: Path | None) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.root = root
        self.credentials = credentials
        self.static_dir = static_dir
        self.static = static_dir or root
        self.seen_auth: list[str | None] = []
        self.before_reply: Callable[[str, str], None] | None = None  # (method, path) of each git request


@dataclass
class HttpGit:
    url: str  # http://127.0.0.1:PORT
    server: _GitHttpServer

    @property
    def seen_auth(self) -> list[str | None]:
        return self.server.seen_auth

    def before_reply(self, hook: Callable[[str, str], None] | None) -> None:
        """Call ``hook(method, path)`` once git http-backend has answered a request, before the answer is sent:
        what it changes (a ref moved) the client sees from its next request on."""
        self.server.before_reply = hook


@contextmanager
def git_http(root: Path, credentials: tuple[str, str] | None = None,
             static_dir: Path | None = None) -> Iterator[HttpGit]:
    """``git http-backend`` for the repositories under ``root`` (and plain files from ``static_dir``) on
    127.0.0.1, with HTTP basic auth when ``credentials`` = (user, password)."""
    server = _GitHttpServer(root, credentials, static_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpGit(f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
