"""One registry's HTTP API (distribution spec v2): sessions with its TLS settings, auth, retries, error decoding.

Every request names the image reference it serves, so every error does too.

Timeouts: a registry that accepts a connection and then says nothing must not hold a build. Every request has a
connect timeout and a read timeout (the longest silence allowed between bytes) of REGISTRY_TIMEOUT seconds (30,
go-containerregistry's dial timeout, which kaniko uses; the environment variable KILN_REGISTRY_TIMEOUT sets
another), and silence is not retried: the build fails with one line naming the registry. Requests that
write (PUT, PATCH, POST, DELETE: uploads, their final PUT, mounts, manifests) get at least WRITE_READ_TIMEOUT to
answer, since a registry may check or copy a large blob before it answers; a silent registry still fails on
its first GET or HEAD, which every pull and push begins with.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
import urllib3

from kiln.errors import AuthError, RegistryError, UsageError
from kiln.transports.registry.auth import Authenticator, repository_scope
from kiln.transports.registry.credentials import Credentials, docker_config_path, lookup_credentials
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.reference import DOCKER_HUB, DOCKER_HUB_API, canonical_registry
from kiln.transports.registry.retry import TRANSIENT_ERRORS, RetryPolicy, is_retryable_status

log = logging.getLogger("kiln.registry")

Body = bytes | Callable[[], Any] | None
# 401s a request may take before giving up: one to learn the challenge, one more when a token is refused.
_MAX_UNAUTHORIZED = 2

TIMEOUT_ENV = "KILN_REGISTRY_TIMEOUT"
REGISTRY_TIMEOUT = 30.0  # seconds to connect, and of silence while waiting for an answer
WRITE_READ_TIMEOUT = 300.0  # seconds a registry may take to answer a request that writes


def registry_timeout(opts: RegistryOptions) -> float:
    """The connect and read timeout of registry requests: $KILN_REGISTRY_TIMEOUT, else REGISTRY_TIMEOUT (or
    the options' own, when shorter)."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return min(opts.timeout, REGISTRY_TIMEOUT)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise UsageError(f"{value!r} is not a number of seconds above 0", TIMEOUT_ENV)
    return seconds


def is_timeout(e: BaseException) -> bool:
    """Whether a requests or urllib3 error is a timeout: requests wraps urllib3's ReadTimeoutError in a
    ConnectionError when it happens while a streamed body is read."""
    if isinstance(e, requests.Timeout | urllib3.exceptions.TimeoutError):
        return True
    inner = e.args[0] if isinstance(e, requests.ConnectionError) and e.args else None
    return isinstance(inner, urllib3.exceptions.TimeoutError | requests.Timeout)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def pull_scope(repository: str) -> str:
    return repository_scope(repository, "pull")


def push_scope(repository: str) -> str:
    return repository_scope(repository, "pull,push")


def error_detail(response: requests.Response) -> str:
    """The registry's own words for an error (its JSON ``errors`` list), short and without echoing headers."""
    try:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
    except ValueError:
        errors = None
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors[:3]:
            if isinstance(e, dict):
                code, msg = str(e.get("code") or ""), str(e.get("message") or "")
                parts.append(f"{code}: {msg}" if code and msg else code or msg)
        if parts:
            return "; ".join(parts)
    return response.reason or f"HTTP {response.status_code}"


class RegistryClient:
    """Requests to one registry, with its TLS settings, its credentials, and retries for transient faults."""

    def __init__(
        self,
        registry: str,
        opts: RegistryOptions,
        *,
        pulling: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        self.registry = canonical_registry(registry)
        self.opts = opts
        host = DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry
        self.scheme = "http" if opts.is_insecure(self.registry, pulling) else "https"
        self.base_url = f"{self.scheme}://{host}"
        self.session = requests.Session()
        # A proxy from the environment must not capture a registry on this machine; elsewhere
        # HTTP(S)_PROXY / NO_PROXY apply as requests reads them.
        self.session.trust_env = not is_loopback(host)
        self.session.headers["User-Agent"] = opts.user_agent
        ca = opts.registry_certificates.get(self.registry)
        if opts.skips_tls_verify(self.registry, pulling):
            self.session.verify = False
        elif ca:
            self.session.verify = str(ca)
        client_cert = opts.registry_client_certs.get(self.registry)
        if client_cert:
            self.session.cert = (str(client_cert[0]), str(client_cert[1]))
        retries = opts.transient_retries + (opts.image_download_retry if pulling else opts.push_retry)
        self.retry = RetryPolicy(max(1, retries + 1), opts.retry_backoff, opts.max_retry_wait)
        if credentials is not None:
            fixed = credentials
            source: Callable[[], Credentials] = lambda: fixed  # noqa: E731
        else:
            path: Path = docker_config_path(opts.docker_config)
            source = lambda: lookup_credentials(self.registry, path)  # noqa: E731
        self.timeout = registry_timeout(opts)
        self.auth = Authenticator(self.registry, self.session, source, self.timeout)

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str],
        reference: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        retry: bool = True,
    ) -> requests.Response:
        """Send a request, answering auth challenges and retrying transient faults; return the final response.

        A retryable status that persists is returned as the response (the caller says what failed); a
        connection that keeps failing raises RegistryError. ``body`` may be a callable giving a fresh body for
        each try, so a streamed upload can be sent again.
        """
        scopes = tuple(scopes)
        attempts = self.retry.attempts if retry else 1
        unauthorized = 0
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            hdrs.update(self.auth.headers(scopes))
            data = body() if callable(body) else body
            try:
                resp = self.session.request(
                    method,
                    self.url(path),
                    headers=hdrs,
                    params=params,
                    data=data,
                    stream=stream,
                    timeout=(self.timeout, self.read_timeout(method)),
                    allow_redirects=True,
                )
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"TLS error talking to {self.registry}: {_short(e)}", reference) from None
            except requests.Timeout as e:
                raise self.silent(e, f"{method} {path}", reference) from None
            except TRANSIENT_ERRORS as e:
                attempt += 1
                log.debug("%s %s: %s (try %d of %d)", method, path, type(e).__name__, attempt, attempts)
                if attempt >= attempts:
                    raise RegistryError(
                        f"{method} to {self.registry} failed after {attempt} tries: {_short(e)}", reference
                    ) from None
                self.retry.wait(attempt - 1)
                continue
            finally:
                close = getattr(data, "close", None)
                if close is not None:
                    close()
            log.debug("%s %s -> %d", method, path, resp.status_code)
            if resp.status_code == 401:
                unauthorized += 1
                if unauthorized > _MAX_UNAUTHORIZED:
                    resp.close()
                    raise AuthError(f"{self.registry} refused the credentials (401)", reference, 401)
                self.auth.unauthorized(resp, scopes, reference, sent="Authorization" in hdrs)
                resp.close()
                continue
            if is_retryable_status(resp.status_code) and attempt + 1 < attempts:
                attempt += 1
                self.retry.wait(attempt - 1, resp)
                resp.close()
                continue
            return resp

    def read_timeout(self, method: str) -> float:
        writes = method in ("PUT", "PATCH", "POST", "DELETE")
        return max(self.timeout, WRITE_READ_TIMEOUT) if writes else self.timeout

    def silent(self, e: BaseException, what: str, reference: str) -> RegistryError:
        """The error for a registry that did not connect or answer in time (never retried: silence is no
        transient fault, and three waits made a dead registry cost minutes)."""
        kind = "accept the connection" if isinstance(e, requests.ConnectTimeout) else "answer"
        # (``what`` starts with the method for a request; body reads after a GET say "reading ...")
        seconds = self.read_timeout(what.split(" ", 1)[0]) if kind == "answer" else self.timeout
        path = what if len(what) <= 120 else what[:120] + "..."
        return RegistryError(
            f"registry {self.registry} did not {kind} within {seconds:g} s ({path}); "
            f"{TIMEOUT_ENV}=SECONDS waits longer",
            reference,
        )

    def fail(self, resp: requests.Response, what: str, reference: str) -> RegistryError:
        """The error for an unexpected response; 401/403 as AuthError."""
        detail = error_detail(resp)
        resp.close()
        cls = AuthError if resp.status_code in (401, 403) else RegistryError
        return cls(f"{what}: {resp.status_code} {detail}", reference, resp.status_code)


def _short(e: BaseException) -> str:
    # requests' messages nest urllib3's; the innermost reason is what a user can act on.
    text = str(e)
    return text if len(text) < 300 else text[:300] + "..."
