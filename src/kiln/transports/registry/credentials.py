"""Credentials from Docker's config.json: ``auths``, ``credHelpers`` and ``credsStore``, as ``docker login`` left them.

Secrets live only in ``Credentials`` objects, whose repr hides them; nothing here logs or puts them in an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.errors import AuthError
from kiln.transports.registry.reference import DOCKER_HUB, DOCKER_HUB_AUTH_KEY, canonical_registry


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = field(default="", repr=False)
    # An OAuth2 refresh token (``identitytoken``): exchanged at the token endpoint, never sent as a password.
    identity_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        kind = "identity token" if self.identity_token else "password" if self.password else "nothing"
        return f"Credentials(username={self.username!r}, with {kind})"

    __str__ = __repr__

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token)


ANONYMOUS = Credentials()


def docker_config_path(override: Path | None = None, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if override is not None:
        # Like --docker-config / DOCKER_CONFIG, a directory means its config.json.
        return override / "config.json" if override.is_dir() else override
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _server_key(key: str) -> str:
    """The registry a config.json key means: Docker keys may carry a scheme and a path (``https://h/v1/``)."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix) :]
    k = k.split("/", 1)[0]
    return canonical_registry(k)


def _helper_server_url(registry: str) -> str:
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise AuthError(f"cannot read docker config {path}: {e.strerror}") from None
    try:
        obj = json.loads(data)
    except ValueError:
        # The parser's message would quote the file's text, which holds secrets.
        raise AuthError(f"docker config {path} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise AuthError(f"docker config {path} is not a JSON object")
    return obj


def _from_auth_entry(entry: Any, registry: str, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(f"docker config {path}: bad 'auth' value for {registry}") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(f"docker config {path}: 'auth' value for {registry} is not user:password")
    identity = str(entry.get("identitytoken") or "")
    creds = Credentials(username, password, identity)
    return None if creds.empty else creds


def run_credential_helper(helper: str, registry: str) -> Credentials | None:
    """``docker-credential-<helper> get``: the server URL on stdin, JSON {Username, Secret} on stdout."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"],
            input=_helper_server_url(registry).encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        raise AuthError(f"credential helper {program} not found in PATH", registry) from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} did not answer in 60s", registry) from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        if "credentials not found" in out.lower():
            return None
        # Its output is not repeated: a helper may have printed something secret before failing.
        raise AuthError(f"credential helper {program} failed with status {proc.returncode}", registry)
    try:
        obj = json.loads(proc.stdout)
        username, secret = str(obj.get("Username") or ""), str(obj.get("Secret") or "")
    except (ValueError, AttributeError):
        raise AuthError(f"credential helper {program} printed no JSON answer", registry) from None
    if username == "<token>":
        return Credentials(identity_token=secret)
    creds = Credentials(username, secret)
    return None if creds.empty else creds


def lookup_credentials(registry: str, config_path: Path) -> Credentials:
    """The credentials config.json gives for a registry (host[:port] or docker.io), or ANONYMOUS."""
    registry = canonical_registry(registry)
    config = load_config(config_path)
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _server_key(key) == registry and helper:
                return run_credential_helper(str(helper), registry) or ANONYMOUS
    auths = config.get("auths") or {}
    if isinstance(auths, dict):
        # An exact key wins over one that only normalises to the registry (Docker does the same).
        exact = [k for k in auths if k == registry or (registry == DOCKER_HUB and k == DOCKER_HUB_AUTH_KEY)]
        loose = [k for k in auths if k not in exact and _server_key(k) == registry]
        for key in exact + loose:
            creds = _from_auth_entry(auths[key], registry, config_path)
            if creds is not None:
                return creds
    store = config.get("credsStore")
    if store:
        return run_credential_helper(str(store), registry) or ANONYMOUS
    return ANONYMOUS
