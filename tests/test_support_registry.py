"""The test registries: they answer the distribution API, and TLS and auth really are enforced."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from support.base_images import OciImage, push
from support.images import read_manifest, skopeo_inspect
from support.procs import ToolError, run
from support.registry import Credentials, Registry, RegistryFactory, registry_factory


def test_registry_answers_v2(registry: Registry) -> None:
    status, headers, body = registry.get("/v2/")
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert body == b"{}"
    assert registry.url == f"http://127.0.0.1:{registry.port}"


def test_busybox_pushed_with_skopeo_keeps_its_digests(
    registry: Registry, busybox_image: OciImage, busybox_ref: str
) -> None:
    local = read_manifest(busybox_image.layout, busybox_image.tag)
    remote = skopeo_inspect(f"docker://{busybox_ref}", registry.tool_flags())
    assert remote.manifest["config"]["digest"] == local["config"]["digest"]
    assert [layer["digest"] for layer in remote.manifest["layers"]] == [
        layer["digest"] for layer in local["layers"]
    ]
    assert remote.config["config"]["Cmd"] == ["sh"]
    # The registry itself says it has the tag.
    status, _, body = registry.get("/v2/base/busybox/tags/list")
    assert status == 200 and b'"latest"' in body


def test_request_log_records_what_was_asked(registry: Registry) -> None:
    mark = registry.log_mark()
    status, _, _ = registry.get("/v2/nothing/here/manifests/missing")
    assert status == 404
    assert ("GET", "/v2/nothing/here/manifests/missing", 404) in registry.requests_since(mark)
    assert all(uri != "/v2/nothing/here/manifests/missing" for _, uri, _ in registry.requests_since(
        registry.log_mark()))  # fmt: skip


def test_tls_registry_needs_its_ca(tls_registry: Registry, busybox_image: OciImage) -> None:
    assert tls_registry.url.startswith("https://") and tls_registry.ca_cert is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", tls_registry.port), timeout=5) as sock:
            ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    dest = f"docker://{tls_registry.ref('tls/busybox')}"
    with pytest.raises(ToolError, match="certificate|x509"):
        run(["skopeo", "copy", "--quiet", busybox_image.ref, dest])
    run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(tls_registry.cert_dir), busybox_image.ref, dest])
    inspected = skopeo_inspect(dest, ["--cert-dir", str(tls_registry.cert_dir)])
    assert inspected.config["config"]["Cmd"] == ["sh"]
    assert tls_registry.get("/v2/")[0] == 200
    assert tls_registry.get("/v2/", verify=False)[0] == 200


def test_auth_registry_needs_credentials(auth_registry: Registry, busybox_image: OciImage) -> None:
    creds = auth_registry.credentials
    assert creds is not None
    status, headers, _ = auth_registry.get("/v2/", auth=False)
    assert status == 401
    assert headers["Www-Authenticate"].startswith('Basic realm="kiln-test"')
    dest = f"docker://{auth_registry.ref('auth/busybox')}"
    plain = ["--dest-tls-verify=false"]
    with pytest.raises(ToolError, match="(?i)unauthorized|authentication required"):
        run(["skopeo", "copy", "--quiet", *plain, busybox_image.ref, dest])
    with pytest.raises(ToolError, match="(?i)unauthorized|authentication required"):
        run(["skopeo", "copy", "--quiet", *plain, f"--dest-creds={creds.username}:wrong", busybox_image.ref, dest])
    push(busybox_image, auth_registry.ref("auth/busybox"), auth_registry.skopeo_flags("dest"))
    assert auth_registry.get("/v2/auth/busybox/tags/list")[0] == 200
    assert auth_registry.get("/v2/auth/busybox/tags/list", auth=False)[0] == 401


def test_factory_merges_extra_config_and_stops_by_pid(tmp_path: Path) -> None:
    with registry_factory(tmp_path) as factory:
        assert isinstance(factory, RegistryFactory)
        reg = factory.start(
            extra_config={"http": {"headers": {"X-Kiln-Test": ["yes"]}}},
            credentials=Credentials("u", "p"),
        )
        status, headers, _ = reg.get("/v2/")
        assert status == 200 and headers["X-Kiln-Test"] == "yes"
        pid, port = reg.pid, reg.port
        os.kill(pid, 0)  # running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
