"""TLS: a registry whose certificate comes from a test CA, trusted through --registry-certificate; mTLS; proxies."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import make_image
from kiln.errors import RegistryError
from kiln.oci.platform import Platform
from kiln.transports.registry.options import RegistryOptions
from kiln.transports.registry.pull import pull_image, resolve
from kiln.transports.registry.push import push_image
from support.certs import make_certificates
from support.procs import run_text

AMD64 = Platform("linux", "amd64")


def test_tls_with_registry_certificate(tls_registry, tmp_path: Path, store) -> None:
    opts = RegistryOptions(
        registry_certificates={tls_registry.address: str(tls_registry.ca_cert)}, docker_config=tmp_path / "n.json"
    )
    made = make_image({"tls.txt": b"tls\n"})
    ref = tls_registry.ref("kiln/tls", "t")
    assert push_image(made.image, [ref], opts) == made.image.digest
    inspect = json.loads(run_text(["skopeo", "inspect", *tls_registry.tool_flags(), f"docker://{ref}"]))
    assert inspect["Digest"] == made.image.digest
    assert pull_image(ref, AMD64, store, opts).digest == made.image.digest


def test_tls_fails_without_the_ca(tls_registry, tmp_path: Path) -> None:
    made = make_image({"tls2.txt": b"tls\n"})
    ref = tls_registry.ref("kiln/tls-noca", "t")
    opts = RegistryOptions(docker_config=tmp_path / "n.json", retry_backoff=0.01)
    with pytest.raises(RegistryError) as info:
        push_image(made.image, [ref], opts)
    assert "TLS" in str(info.value) and ref in str(info.value)
    # A CA that did not sign the registry's certificate is no better.
    other = make_certificates(tmp_path / "other")
    opts = RegistryOptions(registry_certificates={tls_registry.address: str(other.ca_cert)},
                           docker_config=tmp_path / "n.json")  # fmt: skip
    with pytest.raises(RegistryError):
        resolve(ref, opts)


def test_skip_tls_verify(tls_registry, tmp_path: Path) -> None:
    made = make_image({"skip.txt": b"skip\n"})
    ref = tls_registry.ref("kiln/tls-skip", "t")
    for opts in (
        RegistryOptions(skip_tls_verify=True, docker_config=tmp_path / "n.json"),
        RegistryOptions(skip_tls_verify_registries=frozenset({tls_registry.address}), docker_config=tmp_path / "n"),
    ):
        assert push_image(made.image, [ref], opts) == made.image.digest


def test_plain_http_only_when_insecure(registry, tmp_path: Path) -> None:
    made = make_image({"insecure.txt": b"insecure\n"})
    ref = registry.ref("kiln/insecure", "t")
    with pytest.raises(RegistryError):
        push_image(made.image, [ref], RegistryOptions(docker_config=tmp_path / "n.json", retry_backoff=0.01))
    opts = RegistryOptions(insecure_registries=frozenset({registry.address}), docker_config=tmp_path / "n.json")
    assert push_image(made.image, [ref], opts) == made.image.digest
    pull_opts = RegistryOptions(insecure_pull=True, docker_config=tmp_path / "n.json")
    assert resolve(ref, pull_opts).digest == made.image.digest


def test_client_certificate(registry_factory, tmp_path: Path, store) -> None:
    """mTLS: the registry demands a client certificate signed by its CA (kaniko --registry-client-cert)."""
    certs = make_certificates(tmp_path / "client-ca")
    client_key, client_csr, client_cert = tmp_path / "c.key", tmp_path / "c.csr", tmp_path / "c.crt"
    run_text(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", client_key, "-out", client_csr, "-subj", "/CN=kiln client"])  # fmt: skip
    ext = tmp_path / "c.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    run_text(["openssl", "x509", "-req", "-in", client_csr, "-CA", certs.ca_cert, "-CAkey",
              certs.ca_cert.with_name("ca.key"), "-CAcreateserial", "-out", client_cert, "-days", "1",
              "-extfile", ext])  # fmt: skip
    tls = registry_factory.start(name="mtls-base", tls=True)
    config = json.loads(tls.config_path.read_text())
    config["http"]["tls"]["clientcas"] = [str(certs.ca_cert)]
    with mtls_registry(tmp_path / "mtls", config) as address:
        _check_mtls(address, tls.ca_cert, client_cert, client_key, tmp_path, store)


def _check_mtls(address: str, ca: Path, client_cert: Path, client_key: Path, tmp_path: Path, store) -> None:
    ref = f"{address}/kiln/mtls:t"
    made = make_image({"mtls.txt": b"mtls\n"})
    base = {"registry_certificates": {address: str(ca)}, "docker_config": tmp_path / "n.json",
            "retry_backoff": 0.01}  # fmt: skip
    with pytest.raises(RegistryError):
        push_image(made.image, [ref], RegistryOptions(**base))  # type: ignore[arg-type]
    opts = RegistryOptions(registry_client_certs={address: (str(client_cert), str(client_key))}, **base)  # type: ignore[arg-type]
    assert push_image(made.image, [ref], opts) == made.image.digest
    assert pull_image(ref, AMD64, store, opts).digest == made.image.digest


@contextmanager
def mtls_registry(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    """A registry demanding client certificates; started here because the shared fixture's readiness probe
    has no client certificate to offer."""
    directory.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config["http"]["addr"] = f"127.0.0.1:{port}"
    config["storage"]["filesystem"]["rootdirectory"] = str(directory / "storage")
    (directory / "config.yml").write_text(json.dumps(config))
    with open(directory / "log", "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(directory / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((directory / "log").read_text()) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_proxy_in_environment_does_not_capture_loopback(registry, plain_opts, monkeypatch) -> None:
    # Nothing listens on port 9 here: a request that went through this proxy would fail.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    made = make_image({"proxy.txt": b"proxy\n"})
    assert push_image(made.image, [registry.ref("kiln/proxy", "t")], plain_opts) == made.image.digest


def test_proxy_in_environment_is_used_for_other_hosts(monkeypatch, tmp_path: Path) -> None:
    from kiln.transports.registry.client import RegistryClient

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = RegistryClient("registry.example.test", RegistryOptions(docker_config=tmp_path / "n.json"))
    assert client.session.trust_env
    proxies = client.session.merge_environment_settings(client.url("/v2/"), {}, None, None, None)["proxies"]
    assert proxies.get("https") == "http://127.0.0.1:9"
