"""Answering a registry's WWW-Authenticate challenge: Basic, or Bearer tokens from its token service.

A token is fetched for a set of scopes (``repository:NAME:pull,push``; several repositories in one token for a
cross-repository mount), cached under that set until it expires, and fetched again when the registry refuses it.
Tokens and passwords appear in no log line, no exception and no repr.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from kiln.errors import AuthError
from kiln.transports.registry.credentials import Credentials

log = logging.getLogger("kiln.registry.auth")

_PARAM_RE = re.compile(r'\s*([a-zA-Z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# Tokens are reused until this many seconds before they expire, so one never lapses in flight.
_EXPIRY_MARGIN = 10.0
# The spec's default lifetime when the token service does not say.
_DEFAULT_EXPIRES_IN = 60


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header, e.g. ``Bearer realm="...",service="...",scope="..."``."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def repository_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def merge_scopes(scopes: Iterable[str]) -> list[str]:
    """One scope per resource with the union of its actions, in first-seen order (``pull`` + ``pull,push``)."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        if not scope:
            continue
        resource, sep, actions = scope.rpartition(":")
        if not sep:
            resource, actions = scope, ""
        acts = merged.setdefault(resource, [])
        for a in actions.split(","):
            if a and a not in acts:
                acts.append(a)
    return [f"{r}:{','.join(sorted(a))}" if a else r for r, a in merged.items()]


@dataclass
class _Token:
    secret: str = field(repr=False)
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - _EXPIRY_MARGIN


class Authenticator:
    """Authorization headers for one registry, learnt from its challenges; safe to share between threads."""

    def __init__(
        self,
        registry: str,
        session: requests.Session,
        credentials: Callable[[], Credentials],
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._session = session
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._timeout = timeout
        self._clock = clock
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._lock = threading.Lock()
        self._fetch_locks: dict[tuple[str, ...], threading.Lock] = {}

    def __repr__(self) -> str:
        scheme = self._challenge.scheme if self._challenge else "unknown"
        return f"Authenticator({self.registry!r}, scheme={scheme}, tokens={len(self._tokens)})"

    def credentials(self) -> Credentials:
        # Looked up only once a registry asks, so an anonymous pull never runs a credential helper.
        with self._lock:
            if self._credentials is None:
                self._credentials = self._credentials_source()
            return self._credentials

    def headers(self, scopes: Iterable[str]) -> dict[str, str]:
        """The Authorization header to send, fetching a token if the registry wants Bearer and none is cached."""
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            creds = self.credentials()
            if not creds.username and not creds.password:
                return {}
            raw = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if challenge.scheme == "bearer":
            return {"Authorization": "Bearer " + self._token(tuple(sorted(set(scopes))), challenge).secret}
        return {}

    def unauthorized(
        self, response: requests.Response, scopes: Iterable[str], reference: str, sent: bool = True
    ) -> None:
        """Take in a 401 so that the next try can succeed; raise AuthError when no further try can.

        The caller retries once after this; a second 401 for the same request is final. sent: the request
        carried credentials. One that did not (sent side by side with others before the first challenge was
        known) is no sign that the credentials were refused, however many such 401s arrive.
        """
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthError(
                "registry refused the request (401) without a usable authentication challenge", reference, 401
            )
        key = tuple(sorted(set(scopes)))
        with self._lock:
            previous = self._challenge
            self._challenge = challenge
            # A refused token is dropped, so the retry fetches a new one (it expired early, or was revoked).
            self._tokens.pop(key, None)
        if previous is not None and previous.scheme == "basic" and challenge.scheme == "basic":
            creds = self.credentials()
            if creds.empty:
                raise AuthError(f"{self.registry} requires authentication; no credentials found", reference, 401)
            if sent:
                raise AuthError(f"{self.registry} refused the credentials of user {creds.username!r}", reference,
                                401)

    def _token(self, key: tuple[str, ...], challenge: Challenge) -> _Token:
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.fresh(self._clock()):
                return token
            fetch_lock = self._fetch_locks.setdefault(key, threading.Lock())
        # One fetch per scope set at a time: concurrent blob transfers share the token the first one gets.
        with fetch_lock:
            with self._lock:
                token = self._tokens.get(key)
                if token is not None and token.fresh(self._clock()):
                    return token
            token = self._fetch_token(key, challenge)
            with self._lock:
                self._tokens[key] = token
            return token

    def _fetch_token(self, scopes: tuple[str, ...], challenge: Challenge) -> _Token:
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise AuthError(f"{self.registry} sent a Bearer challenge without a usable realm", self.registry)
        creds = self.credentials()
        service = challenge.params.get("service", "")
        all_scopes = merge_scopes([*scopes, *challenge.params.get("scope", "").split(" ")])
        started = self._clock()
        try:
            if creds.identity_token:
                # OAuth2 refresh-token grant, as Docker does for an identity token from `docker login`.
                resp = self._session.post(
                    realm,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": creds.identity_token,
                        "service": service,
                        "scope": " ".join(all_scopes),
                        "client_id": "kiln",
                        "access_type": "offline",
                    },
                    timeout=self._timeout,
                )
            else:
                params: list[tuple[str, str]] = [("service", service)] if service else []
                params += [("scope", s) for s in all_scopes]
                auth = (creds.username, creds.password) if creds.username or creds.password else None
                resp = self._session.get(realm, params=params, auth=auth, timeout=self._timeout)
        except requests.RequestException as e:
            raise AuthError(f"token service {realm} unreachable: {type(e).__name__}", self.registry) from None
        with resp:
            if resp.status_code in (401, 403):
                who = f"user {creds.username!r}" if creds.username else "anonymous access"
                raise AuthError(
                    f"token service {realm} refused {who} ({resp.status_code})", self.registry, resp.status_code
                )
            if resp.status_code != 200:
                raise AuthError(f"token service {realm} answered {resp.status_code}", self.registry, resp.status_code)
            try:
                body = resp.json()
                secret = str(body.get("token") or body.get("access_token") or "")
                expires_in = int(body.get("expires_in") or _DEFAULT_EXPIRES_IN)
            except (ValueError, AttributeError, TypeError):
                raise AuthError(f"token service {realm} answered no token", self.registry) from None
        if not secret:
            raise AuthError(f"token service {realm} answered without a token", self.registry)
        log.debug("token for %s scopes %s, valid %ss", self.registry, " ".join(all_scopes), expires_in)
        return _Token(secret, started + max(expires_in, 0))
