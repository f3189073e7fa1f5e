"""SSH agent forwarding for ``RUN --mount=type=ssh``: a socket of kiln's own that passes each connection on to
the real agent.

The step never sees the agent's own socket (its path, or the directory around it): kiln listens on a new
socket in the step's scratch directory, bind-mounts that socket at the mount's target, and a thread splices
each connection made to it to a new connection to the agent (the ``SSH_AUTH_SOCK`` given with ``--ssh``).
Nothing is interpreted: the agent itself answers, and keeps its keys. When ``--ssh`` names private key files
instead of a socket (BuildKit's ``--ssh default=KEY[,KEY]``), kiln starts an ``ssh-agent`` of its own for the
step, loads the keys into it, and stops it (by its pid) when the step ends.

A proxy lives for one step: ``close()`` stops accepting, ends every spliced connection and removes the socket.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from kiln.errors import SandboxError
from kiln.rootfs import owners

_CHUNK = 1 << 16


class AgentProxy:
    """Listens on ``listen`` (a new socket, owner ``uid``:``gid``, mode ``mode``) and splices every connection
    to the agent at ``upstream``."""

    def __init__(self, listen: Path, upstream: Path, *, uid: int = 0, gid: int = 0, mode: int = 0o600) -> None:
        self.listen = listen
        self.upstream = upstream
        self._sel = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._thread: threading.Thread | None = None
        self._stopping = False
        try:
            with _short_path(listen) as short:
                self._server.bind(short)
            owners.chown(listen, uid, gid, follow_symlinks=True)
            os.chmod(listen, mode)
            self._server.listen(16)
            self._server.setblocking(False)
        except OSError as e:
            self._close_sockets()
            raise SandboxError(f"cannot create the ssh agent socket: {e.strerror or e}") from None

    def start(self) -> AgentProxy:
        self._sel.register(self._server, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._loop, name="kiln-ssh-agent-proxy", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    return
                if sock is self._server:
                    self._accept()
                else:
                    assert isinstance(sock, socket.socket)
                    self._pass_on(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._server.accept()
        except (BlockingIOError, InterruptedError):
            return
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _short_path(self.upstream) as short:
                agent.connect(short)
        except OSError:
            agent.close()
            client.close()  # the step's client sees the agent refuse: as if it had
            return
        for one, other in ((client, agent), (agent, client)):
            one.setblocking(True)
            self._peers[one] = other
            self._sel.register(one, selectors.EVENT_READ)

    def _pass_on(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(_CHUNK)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s)
            s.close()

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(10)
        for sock in list(self._peers):
            self._drop(sock)
        self._close_sockets()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)

    def _close_sockets(self) -> None:
        for s in (self._server, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """A name for ``path`` short enough for a unix socket address (108 bytes): through /proc/self/fd and a
    descriptor of its directory when the path itself is longer."""
    text = os.fspath(path)
    if len(text.encode()) < 100:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class KeyAgent:
    """An ``ssh-agent`` of kiln's own holding the given private keys, for one step; its socket in ``directory``."""

    def __init__(self, keys: Sequence[Path], directory: Path, label: str) -> None:
        self.socket = directory / "agent.sock"
        agent = shutil.which("ssh-agent")
        add = shutil.which("ssh-add")
        if agent is None or add is None:
            raise SandboxError(f"--ssh {label}: keys need ssh-agent and ssh-add (Debian: openssh-client)")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        # Named relative to its directory: a unix socket's address is short (108 bytes), kiln's paths may not be.
        self._proc = subprocess.Popen(
            [agent, "-D", "-a", self.socket.name], cwd=directory, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        try:
            self._wait_socket()
            for key in keys:
                proc = subprocess.run(
                    [add, "-q", os.fspath(key.absolute())], env={**env, "SSH_AUTH_SOCK": self.socket.name},
                    cwd=directory, stdin=subprocess.DEVNULL, capture_output=True, start_new_session=True, timeout=30,
                    check=False,
                )
                if proc.returncode != 0:
                    # ssh-add's own message names the file and why (a passphrase, a bad format): never key bytes.
                    why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                    raise SandboxError(f"--ssh {label}: cannot load the key {key.name}: "
                                       f"{why[-1] if why else 'ssh-add failed'}")
        except BaseException:
            self.close()
            raise

    def _wait_socket(self) -> None:
        import time

        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise SandboxError("ssh-agent did not start")
            time.sleep(0.01)

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
