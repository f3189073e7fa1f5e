"""kaniko's --push-ignore-immutable-tag-errors: a registry that refuses to move an immutable tag (ECR's and
Artifact Registry's answers) fails the push, unless the flag says to leave that tag as it is.

The registry here is a small fake that has every blob and refuses every manifest with the message under test:
a real registry (distribution) has no immutable tags."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import MadeImage
from kiln.errors import RegistryError
from kiln.transports.registry import RegistryOptions, push_image
from kiln.transports.registry.push import IMMUTABLE_TAG_MESSAGES

ECR = ("TAG_INVALID", "The image tag 'v1' already exists in the 'app' repository and cannot be overwritten "
       "because the repository is immutable.")  # fmt: skip
GAR = ("MANIFEST_INVALID", "The repository has enabled tag immutability.")
OTHER = ("MANIFEST_INVALID", "manifest invalid")


class _Immutable(BaseHTTPRequestHandler):
    answer: tuple[str, str] = ECR
    manifests_put: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, b"{}", {"Content-Type": "application/json"})

    def do_HEAD(self) -> None:
        self._send(200, headers={"Docker-Content-Digest": self.path.rsplit("/", 1)[-1]})

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.manifests_put.append(self.path)
        code, message = self.answer
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(400, body, {"Content-Type": "application/json"})


@pytest.fixture
def immutable_registry() -> Iterator[tuple[str, type[_Immutable]]]:
    handler = type("Handler", (_Immutable,), {"manifests_put": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("answer", [ECR, GAR])
def test_an_immutable_tag_fails_the_push_unless_asked_to_ignore_it(
    immutable_registry: tuple[str, type[_Immutable]], made_image: MadeImage, plain_opts: RegistryOptions,
    answer: tuple[str, str],
) -> None:  # fmt: skip
    address, handler = immutable_registry
    handler.answer = answer
    refs = [f"{address}/app:v1", f"{address}/app:v2"]
    with pytest.raises(RegistryError) as e:
        push_image(made_image.image, refs, plain_opts)
    assert answer[1] in str(e.value)
    assert handler.manifests_put == ["/v2/app/manifests/v1"]  # the first refusal stops the push

    handler.manifests_put.clear()
    ignoring = dataclasses.replace(plain_opts, ignore_immutable_tag_errors=True)
    assert push_image(made_image.image, refs, ignoring) == made_image.image.digest
    assert handler.manifests_put == ["/v2/app/manifests/v1", "/v2/app/manifests/v2"]  # both tags were tried


def test_other_manifest_errors_still_fail_with_the_flag(
    immutable_registry: tuple[str, type[_Immutable]], made_image: MadeImage, plain_opts: RegistryOptions
) -> None:
    address, handler = immutable_registry
    handler.answer = OTHER
    assert not any(m in OTHER[1] for m in IMMUTABLE_TAG_MESSAGES)
    ignoring = dataclasses.replace(plain_opts, ignore_immutable_tag_errors=True)
    with pytest.raises(RegistryError):
        push_image(made_image.image, [f"{address}/app:v1"], ignoring)
