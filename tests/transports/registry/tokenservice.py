"""A Bearer token service for docker-registry's `auth: token`, in the shape of Docker Hub's.

It checks Basic credentials (GET) or an OAuth2 refresh token (POST), and issues JWTs signed RS256 by a key
whose self-signed certificate travels in the token's x5c header; the registry trusts that certificate through
its rootcertbundle. Signing uses the openssl CLI, so the tests need no crypto library.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SERVICE = "kiln-test-registry"
ISSUER = "kiln-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    method: str
    user: str | None
    scopes: list[str]
    grant: str


@dataclass
class TokenService:
    directory: Path
    username: str
    password: str
    refresh_token: str = field(default_factory=lambda: "refresh-" + secrets.token_hex(8))
    expires_in: int = 300
    # Tokens still to issue that the registry will refuse as expired, while telling the client they are fresh.
    expired_next: int = 0
    requests: list[TokenRequest] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    @property
    def key(self) -> Path:
        return self.directory / "token.key"

    @property
    def cert(self) -> Path:
        return self.directory / "token.crt"

    def registry_config(self) -> dict[str, Any]:
        return {
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.cert),
                }
            }
        }

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-days", "2", "-subj", "/CN=kiln test token signer"],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self._x5c = base64.b64encode(der).decode()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                user = service._basic_user(self.headers.get("Authorization", ""))
                scopes = query.get("scope", [])
                service.requests.append(TokenRequest("GET", user, scopes, "password"))
                if user is None and self.headers.get("Authorization"):
                    self._answer(401, {"details": "bad credentials"})
                    return
                self._answer(200, service._token_body(user or "", scopes))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                scopes = " ".join(form.get("scope", [])).split()
                grant = form.get("grant_type", [""])[0]
                service.requests.append(TokenRequest("POST", None, scopes, grant))
                if grant != "refresh_token" or form.get("refresh_token", [""])[0] != service.refresh_token:
                    self._answer(401, {"details": "bad refresh token"})
                    return
                self._answer(200, service._token_body(service.username, scopes))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _basic_user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if (user, password) == (self.username, self.password) else None

    def _token_body(self, subject: str, scopes: list[str]) -> dict[str, Any]:
        now = int(time.time())
        expired = self.expired_next > 0
        if expired:
            self.expired_next -= 1
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        # The registry allows 60 s of clock skew, so an "expired" token is one from well before that.
        exp = now - 600 if expired else now + self.expires_in
        claims = {
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": exp, "nbf": now - 1200, "iat": now - 1200,
            "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        token = self._sign({"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}, claims)
        self.issued.append(token)
        return {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": "now"}

    def _sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return signing_input + "." + _b64url(signature)
