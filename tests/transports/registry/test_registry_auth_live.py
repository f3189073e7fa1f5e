"""Basic and Bearer auth against real registries: htpasswd, and a token service issuing signed JWTs."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import make_image
from kiln.errors import AuthError, RegistryError
from kiln.oci.platform import Platform
from kiln.transports.registry.client import RegistryClient
from kiln.transports.registry.credentials import Credentials
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import pull_image
from kiln.transports.registry.push import push_image
from support.procs import run_text

AMD64 = Platform("linux", "amd64")


def write_config(path: Path, auths: dict[str, dict[str, str]]) -> Path:
    path.write_text(json.dumps({"auths": auths}))
    return path


def basic_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_htpasswd_basic_auth(auth_registry, tmp_path: Path, store) -> None:
    creds = auth_registry.credentials
    config = write_config(
        tmp_path / "config.json", {auth_registry.address: basic_entry(creds.username, creds.password)}
    )
    opts = RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01)
    made = make_image({"basic.txt": b"basic\n"})
    ref = auth_registry.ref("kiln/basic", "t")
    assert push_image(made.image, [ref], opts) == made.image.digest
    flags = auth_registry.tool_flags()
    inspect = json.loads(run_text(["skopeo", "inspect", *flags, f"docker://{ref}"]))
    assert inspect["Digest"] == made.image.digest
    assert pull_image(ref, AMD64, store, opts).digest == made.image.digest


def test_layers_pushed_side_by_side_before_the_first_challenge(auth_registry, tmp_path: Path, store) -> None:
    """Six layers start at once, each meets a 401 before any challenge is known: none of those 401s carried
    credentials, so none is a refusal of them (they were taken for one, now and then, before)."""
    creds = auth_registry.credentials
    config = write_config(
        tmp_path / "config.json", {auth_registry.address: basic_entry(creds.username, creds.password)}
    )
    for attempt in range(3):
        opts = RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01)
        made = make_image({f"layer{attempt}.txt": f"{attempt}\n".encode()}, layers=6)
        ref = auth_registry.ref("kiln/parallel", f"t{attempt}")
        assert push_image(made.image, [ref], opts) == made.image.digest


def test_wrong_password_never_shows_it(auth_registry, tmp_path: Path, store, caplog) -> None:
    secret = "wrong-Pa55-d0n7-l34k"
    config = write_config(tmp_path / "config.json", {auth_registry.address: basic_entry("kiln", secret)})
    opts = RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01)
    ref = auth_registry.ref("kiln/basic", "t")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as info:
        pull_image(ref, AMD64, store, opts)
    err = info.value
    assert ref in str(err) and "kiln" in str(err)
    for text in (str(err), repr(err), err.msg, caplog.text):
        assert secret not in text
        assert base64.b64encode(f"kiln:{secret}".encode()).decode() not in text


def test_no_credentials_for_auth_registry(auth_registry, plain_opts, store) -> None:
    with pytest.raises(AuthError) as info:
        pull_image(auth_registry.ref("kiln/basic", "t"), AMD64, store, plain_opts)
    assert "no credentials" in str(info.value)


def token_opts(tmp_path: Path, token_service, registry, **kw) -> RegistryOptions:
    config = write_config(
        tmp_path / "config.json", {registry.address: basic_entry(token_service.username, token_service.password)}
    )
    return RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01, **kw)


def test_bearer_token_push_pull(token_registry, token_service, tmp_path: Path, store, caplog) -> None:
    opts = token_opts(tmp_path, token_service, token_registry)
    made = make_image({"token.txt": b"token\n"})
    ref = token_registry.ref("kiln/token", "t")
    start = len(token_service.requests)
    caplog.set_level(logging.DEBUG)
    assert push_image(made.image, [ref], opts) == made.image.digest
    asked = token_service.requests[start:]
    assert asked and all(r.user == "tokenuser" for r in asked)
    assert ["repository:kiln/token:pull,push"] in [r.scopes for r in asked]
    # One token serves every request of the push: the cache works.
    assert len(asked) == 1
    image = pull_image(ref, AMD64, store, opts)
    assert image.digest == made.image.digest
    for token in token_service.issued:
        assert token not in caplog.text


def test_wrong_password_at_token_service(token_registry, token_service, tmp_path: Path, store) -> None:
    config = write_config(tmp_path / "c.json", {token_registry.address: basic_entry("tokenuser", "bad-s3cret-xyz")})
    opts = RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01)
    with pytest.raises(AuthError) as info:
        pull_image(token_registry.ref("kiln/token", "t"), AMD64, store, opts)
    assert "refused" in str(info.value) and "tokenuser" in str(info.value)
    assert "bad-s3cret-xyz" not in str(info.value) + repr(info.value)


def test_expired_token_is_fetched_again(token_registry, token_service, tmp_path: Path, store) -> None:
    opts = token_opts(tmp_path, token_service, token_registry)
    made = make_image({"expired.txt": b"expired\n"})
    ref = token_registry.ref("kiln/expired", "t")
    start = len(token_service.requests)
    token_service.expired_next = 1  # the first token the client gets is already stale for the registry
    try:
        assert push_image(made.image, [ref], opts) == made.image.digest
    finally:
        token_service.expired_next = 0
    assert len(token_service.requests) - start == 2


def test_short_lived_token_is_renewed(token_registry, token_service, tmp_path: Path) -> None:
    """expires_in below the client's safety margin: every request needs a fresh token, and gets one."""
    opts = token_opts(tmp_path, token_service, token_registry)
    made = make_image({"short.txt": b"short\n"})
    ref = token_registry.ref("kiln/short", "t")
    token_service.expires_in = 5
    start = len(token_service.requests)
    try:
        push_image(made.image, [ref], opts)
    finally:
        token_service.expires_in = 300
    assert len(token_service.requests) - start > 2


def test_identity_token_refresh_grant(token_registry, token_service, tmp_path: Path, store) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {token_registry.address: {"identitytoken": token_service.refresh_token}}}))
    opts = RegistryOptions(insecure=True, docker_config=config, retry_backoff=0.01)
    made = make_image({"identity.txt": b"identity\n"})
    ref = token_registry.ref("kiln/identity", "t")
    start = len(token_service.requests)
    push_image(made.image, [ref], opts)
    grants = {r.grant for r in token_service.requests[start:]}
    assert grants == {"refresh_token"}


def test_token_not_in_errors(token_registry, token_service, tmp_path: Path) -> None:
    opts = token_opts(tmp_path, token_service, token_registry)
    client = RegistryClient(token_registry.address, opts)
    resp = client.request("GET", "/v2/kiln/none/manifests/x", scopes=["repository:kiln/none:pull"], reference="r")
    err = client.fail(resp, "fetching", "r")
    token = token_service.issued[-1]
    assert err.status == 404
    for text in (str(err), repr(err), repr(client), repr(client.auth)):
        assert token not in text
    assert "token" not in repr(Credentials("u", token))


def test_cross_repository_mount(token_registry, token_service, tmp_path: Path, store) -> None:
    opts = token_opts(tmp_path, token_service, token_registry)
    made = make_image({"mount.txt": b"mount me\n"}, layers=2)
    src = token_registry.ref("kiln/mount-src", "t")
    push_image(made.image, [src], opts)
    pulled = pull_image(src, AMD64, store, opts)
    dest = token_registry.ref("kiln/mount-dest", "t")
    start = len(token_service.requests)
    mark = token_registry.log_mark()
    assert push_image(pulled, [dest], opts) == made.image.digest
    seen = token_registry.requests_since(mark)
    mounts = [(m, uri, status) for m, uri, status in seen if m == "POST" and "mount=" in uri]
    assert len(mounts) == 3 and all(status == 201 for _, _, status in mounts)  # two layers and the config
    assert all("from=kiln%2Fmount-src" in uri or "from=kiln/mount-src" in uri for _, uri, _ in mounts)
    assert not [x for x in seen if x[0] == "PATCH" or (x[0] == "PUT" and "/blobs/" in x[1])]
    # The token that allowed the mount covered both repositories.
    scopes = [sorted(r.scopes) for r in token_service.requests[start:]]
    assert ["repository:kiln/mount-dest:pull,push", "repository:kiln/mount-src:pull"] in scopes


def test_mount_from_unknown_repository_falls_back_to_upload(registry, plain_opts) -> None:
    from kiln.transports.registry.sources import BlobOrigin

    made = make_image({"fallback.txt": b"fallback\n"})
    origins = {d: BlobOrigin(registry.address, "kiln/does-not-exist") for d in made.blobs}
    mark = registry.log_mark()
    ref = registry.ref("kiln/fallback", "t")
    push_image(made.image, [ref], replace(plain_opts), origins=origins)
    seen = registry.requests_since(mark)
    assert [s for _, uri, s in seen if "mount=" in uri] == [202, 202]
    assert len([1 for m, uri, _ in seen if m == "PUT" and "/blobs/" in uri]) == 2
    assert pull_image  # the push is checked by skopeo in the round-trip tests; here only the fallback path


def test_registry_error_names_reference(registry, plain_opts, store) -> None:
    with pytest.raises(RegistryError) as info:
        pull_image(registry.ref("Bad/Upper", "x"), AMD64, store, plain_opts)
    assert "Bad/Upper" in str(info.value)
