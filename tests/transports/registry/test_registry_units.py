"""Challenges, scopes, retry timing and mirror candidates: the small pure pieces."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests

from kiln.errors import UsageError
from kiln.transports.registry.auth import merge_scopes, parse_challenge
from kiln.transports.registry.client import is_loopback
from kiln.transports.registry.mirrors import candidate_references
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.retry import RetryPolicy, retry_after


def test_parse_bearer_challenge() -> None:
    c = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                        'scope="repository:library/busybox:pull",error="insufficient_scope"')  # fmt: skip
    assert c is not None and c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.params["service"] == "registry.docker.io"
    assert c.params["scope"] == "repository:library/busybox:pull"
    assert c.params["error"] == "insufficient_scope"


def test_parse_basic_and_odd_challenges() -> None:
    c = parse_challenge('Basic realm="kiln test"')
    assert c is not None and c.scheme == "basic" and c.realm == "kiln test"
    c = parse_challenge('BEARER realm=https://x/t, service="a \\"q\\" b"')
    assert c is not None and c.scheme == "bearer" and c.realm == "https://x/t" and c.params["service"] == 'a "q" b'
    assert parse_challenge("") is None


def test_merge_scopes() -> None:
    assert merge_scopes(["repository:a:pull,push", "repository:a:pull", "repository:b:pull", ""]) == [
        "repository:a:pull,push",
        "repository:b:pull",
    ]
    assert merge_scopes(["repository:a:pull", "repository:a:push"]) == ["repository:a:pull,push"]
    assert merge_scopes(["registry:catalog:*"]) == ["registry:catalog:*"]


def _response(headers: dict[str, str]) -> requests.Response:
    r = requests.Response()
    r.headers.update(headers)
    return r


def test_retry_after_forms() -> None:
    assert retry_after(_response({"Retry-After": "7"})) == 7.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = retry_after(_response({"Retry-After": when}))
    assert value is not None and 25 <= value <= 31
    assert retry_after(_response({})) is None
    assert retry_after(_response({"Retry-After": "soon"})) is None


def test_backoff_doubles_and_is_capped() -> None:
    p = RetryPolicy(5, 0.5, 3.0)
    assert [p.delay(i) for i in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert p.delay(0, _response({"Retry-After": "100"})) == 3.0
    assert p.delay(3, _response({"Retry-After": "1"})) == 1.0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("localhost", True), ("[::1]:443", True), ("127.1.2.3", True),
     ("::1", True), ("gcr.io", False), ("10.0.0.1:5000", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_mirror_candidates_for_docker_hub() -> None:
    ref = Reference.parse("busybox:1")
    opts = RegistryOptions(registry_mirrors=("mirror.a", "https://mirror.b/hub/"))
    got = [str(r) for r in candidate_references(ref, opts)]
    assert got == ["mirror.a/library/busybox:1", "mirror.b/hub/library/busybox:1", "docker.io/library/busybox:1"]
    assert [str(r) for r in candidate_references(Reference.parse("gcr.io/p/x"), opts)] == ["gcr.io/p/x:latest"]


def test_registry_map_and_no_fallback() -> None:
    opts = RegistryOptions(
        registry_maps={"index.docker.io": ("m1.local/dh",), "gcr.io": ("m2.local",)},
        skip_default_registry_fallback=True,
    )
    assert [str(r) for r in candidate_references(Reference.parse("user/app:t"), opts)] == ["m1.local/dh/user/app:t"]
    assert [str(r) for r in candidate_references(Reference.parse("gcr.io/p/x"), opts)] == ["m2.local/p/x:latest"]
    # No mirror applies: the registry itself, whatever the fallback flag says.
    assert [str(r) for r in candidate_references(Reference.parse("quay.io/x"), opts)] == ["quay.io/x:latest"]
    with pytest.raises(UsageError):
        candidate_references(Reference.parse("busybox"), RegistryOptions(registry_mirrors=("/path",)))


def test_registry_options_from_build_settings() -> None:
    from kiln.transports.registry import registry_options
    from kiln.transports.registry.settings import RegistrySettings

    settings = RegistrySettings(
        insecure_pull=True,
        insecure_registries=("a:5000",),
        registry_maps=(("docker.io", "m1/x"), ("gcr.io", "m2"), ("docker.io", "m3")),
        registry_certificates={"r": "/ca.pem"},
        push_retry=2,
        docker_config="/cfg",
    )
    pull = registry_options(settings, pull=True)
    push = registry_options(settings, pull=False)
    assert pull.registry_maps == {"docker.io": ("m1/x", "m3"), "gcr.io": ("m2",)}
    assert pull.is_insecure("b", pulling=True) and not push.is_insecure("b", pulling=True)
    assert push.is_insecure("a:5000") and push.push_retry == 2
    assert str(push.docker_config) == "/cfg" and push.registry_certificates == {"r": "/ca.pem"}
