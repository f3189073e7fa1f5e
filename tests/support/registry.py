"""Local registries for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

The registry's configuration is written as JSON (a subset of YAML, so the registry reads it and the tests need
no YAML library). Extra configuration (an `auth: token` section, notifications, ...) is merged in by the
factory, so a test can start a registry shaped like the one it needs; a None value removes a default
section. For token auth pass extra_config={"auth": {"token": {...}}} and no credentials (the registry
accepts one auth method); make_certificates() gives a CA key and certificate to sign tokens with.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.certs import TestCertificates, make_certificates
from support.procs import ToolError, run

REGISTRY_BINARY = "/usr/bin/docker-registry"


@dataclass
class Credentials:
    username: str
    password: str


@dataclass
class Registry:
    """A running registry. `address` (host:port) is what goes in image references."""

    host: str
    port: int
    storage: Path
    log_path: Path
    config_path: Path
    pid: int
    certificates: TestCertificates | None = None
    credentials: Credentials | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.certificates is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def ca_cert(self) -> Path | None:
        return self.certificates.ca_cert if self.certificates else None

    @property
    def cert_dir(self) -> Path | None:
        return self.certificates.cert_dir if self.certificates else None

    def ref(self, repository: str, tag: str = "latest") -> str:
        """An image reference in this registry, e.g. 127.0.0.1:5000/repo:tag."""
        return f"{self.address}/{repository}:{tag}"

    # --- the log, for checks such as "the blob was mounted, not uploaded" -------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_mark(self) -> int:
        """A position in the log; pass it to log_since to see only what happened after it."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        # The registry logs "response completed" after the client already has the response: wait until the
        # log has stopped growing for a moment, so the last request of a test is in it.
        size, deadline = -1, time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.log_path.stat().st_size
            if now == size:
                break
            size = now
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        """(method, path, status) of the requests the registry answered after mark, in order."""
        out = []
        for line in self.log_since(mark).splitlines():
            if "response completed" not in line:
                continue
            fields = _logfmt_fields(line)
            try:
                out.append(
                    (fields["http.request.method"], fields["http.request.uri"], int(fields["http.response.status"]))
                )
            except (KeyError, ValueError):
                continue
        return out

    # --- flags for skopeo and buildah ------------------------------------------------------------------

    def skopeo_flags(self, side: str) -> list[str]:
        """skopeo copy flags to reach this registry as side 'src' or 'dest' (TLS trust and credentials)."""
        assert side in ("src", "dest")
        flags = [f"--{side}-cert-dir", str(self.cert_dir)] if self.tls else [f"--{side}-tls-verify=false"]
        if self.credentials:
            flags.append(f"--{side}-creds={self.credentials.username}:{self.credentials.password}")
        return flags

    def tool_flags(self) -> list[str]:
        """The same for one-sided commands: skopeo inspect, buildah from/pull/push/build."""
        flags = ["--cert-dir", str(self.cert_dir)] if self.tls else ["--tls-verify=false"]
        if self.credentials:
            flags.append(f"--creds={self.credentials.username}:{self.credentials.password}")
        return flags

    # --- HTTP ------------------------------------------------------------------------------------------

    def get(self, path: str, *, auth: bool = True, verify: bool = True) -> tuple[int, dict[str, str], bytes]:
        """GET path from the registry: (status, headers, body). HTTP errors come back as statuses.

        auth=False leaves out the Basic credentials; verify=False skips TLS verification.
        """
        request = urllib.request.Request(self.url + path)
        if auth and self.credentials:
            import base64

            token = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode())
            request.add_header("Authorization", "Basic " + token.decode())
        context = None
        if self.tls:
            if verify:
                context = ssl.create_default_context(cafile=str(self.ca_cert))
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as resp:
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()

    def stop(self) -> None:
        if self._process is None:
            return
        proc, self._process = self._process, None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _logfmt_fields(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    i = 0
    while i < len(line):
        eq = line.find("=", i)
        if eq < 0:
            break
        key = line[i:eq].split()[-1] if line[i:eq].split() else ""
        if eq + 1 < len(line) and line[eq + 1] == '"':
            end = eq + 2
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            fields[key] = line[eq + 2 : end]
            i = end + 1
        else:
            end = line.find(" ", eq)
            end = len(line) if end < 0 else end
            fields[key] = line[eq + 1 : end]
            i = end
    return fields


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value is None:
            out.pop(key, None)  # None removes a default section
        else:
            out[key] = value
    return out


def make_htpasswd(path: Path, username: str, password: str) -> None:
    """A bcrypt htpasswd file (the only hash distribution's htpasswd auth accepts)."""
    line = run(["htpasswd", "-Bbn", username, password]).stdout.decode().strip()
    path.write_text(line + "\n")


def start_registry(
    directory: Path,
    *,
    tls: bool = False,
    credentials: Credentials | None = None,
    extra_config: dict[str, Any] | None = None,
    startup_timeout: float = 20.0,
) -> Registry:
    """Start a registry whose storage, config, certificates and log live in directory (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    storage = directory / "storage"
    storage.mkdir(exist_ok=True)
    certificates = make_certificates(directory / "certs") if tls else None
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "", "secret": secrets.token_hex(16), "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if certificates:
        config["http"]["tls"] = {
            "certificate": str(certificates.server_cert),
            "key": str(certificates.server_key),
        }
    if credentials:
        htpasswd = directory / "htpasswd"
        make_htpasswd(htpasswd, credentials.username, credentials.password)
        config["auth"] = {"htpasswd": {"realm": "kiln-test", "path": str(htpasswd)}}
    if extra_config:
        config = _merge(config, extra_config)

    last_error = ""
    # A free port can be taken between finding it and the registry binding it; try a few.
    for _attempt in range(5):
        port = _free_port()
        config["http"]["addr"] = f"127.0.0.1:{port}"
        config_path = directory / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))
        log_path = directory / "registry.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        registry = Registry(
            host="127.0.0.1", port=port, storage=storage, log_path=log_path, config_path=config_path,
            pid=proc.pid, certificates=certificates, credentials=credentials, _process=proc,
        )  # fmt: skip
        if _wait_until_up(registry, proc, startup_timeout):
            return registry
        registry.stop()
        last_error = registry.log()[-3000:]
    raise ToolError(f"docker-registry did not start; last log:\n{last_error}")


def _wait_until_up(registry: Registry, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            status, _, _ = registry.get("/v2/", auth=False)
            # 401 is "up": an auth registry answers /v2/ with a challenge.
            if status in (200, 401):
                return True
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.05)
    return False


class RegistryFactory:
    """Starts registries under one directory and stops all of them at the end of the session."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[Registry] = []

    def start(
        self,
        *,
        tls: bool = False,
        credentials: Credentials | None = None,
        extra_config: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Registry:
        name = name or f"registry-{len(self._started)}"
        registry = start_registry(
            self._directory / name, tls=tls, credentials=credentials, extra_config=extra_config
        )
        self._started.append(registry)
        return registry

    def stop_all(self) -> None:
        for registry in self._started:
            registry.stop()
        self._started.clear()


@contextmanager
def registry_factory(directory: Path) -> Iterator[RegistryFactory]:
    factory = RegistryFactory(directory)
    try:
        yield factory
    finally:
        factory.stop_all()
