"""Docker's config.json: auths, identity tokens, credential helpers, Hub key variants; secrets kept out of reprs."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from kiln.errors import AuthError
from kiln.transports.registry.credentials import (
    ANONYMOUS,
    Credentials,
    docker_config_path,
    lookup_credentials,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_auths_entry(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.json", {"auths": {"reg.example:5000": {"auth": b64("alice:pa:ss")}}})
    assert lookup_credentials("reg.example:5000", cfg) == Credentials("alice", "pa:ss")
    assert lookup_credentials("other.example", cfg) == ANONYMOUS


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io",
                                 "https://registry-1.docker.io/v2/"])  # fmt: skip
def test_docker_hub_key_variants(tmp_path: Path, key: str) -> None:
    cfg = write(tmp_path / "config.json", {"auths": {key: {"auth": b64("hubuser:hubpass")}}})
    assert lookup_credentials("docker.io", cfg) == Credentials("hubuser", "hubpass")
    assert lookup_credentials("index.docker.io", cfg) == Credentials("hubuser", "hubpass")


def test_scheme_and_path_in_key(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.json", {"auths": {"https://reg.example/v2/": {"username": "u", "password": "p"}}})
    assert lookup_credentials("reg.example", cfg) == Credentials("u", "p")


def test_identity_token(tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.json", {"auths": {"reg.example": {"auth": b64("u:"), "identitytoken": "rt-1"}}})
    creds = lookup_credentials("reg.example", cfg)
    assert creds.identity_token == "rt-1" and creds.username == "u"


def test_missing_file_is_anonymous(tmp_path: Path) -> None:
    assert lookup_credentials("reg.example", tmp_path / "absent.json") == ANONYMOUS


def test_bad_json_error_does_not_quote_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"auths": {"r": {"auth": "c2VjcmV0LXZhbHVl"}}')  # truncated
    with pytest.raises(AuthError) as info:
        lookup_credentials("r", cfg)
    assert "c2VjcmV0LXZhbHVl" not in str(info.value)


def test_config_path_resolution(tmp_path: Path) -> None:
    assert docker_config_path(None, {"DOCKER_CONFIG": "/x/y", "HOME": "/h"}) == Path("/x/y/config.json")
    assert docker_config_path(None, {"HOME": "/h"}) == Path("/h/.docker/config.json")
    assert docker_config_path(tmp_path, {}) == tmp_path / "config.json"
    assert docker_config_path(tmp_path / "c.json", {}) == tmp_path / "c.json"


def test_repr_hides_secrets() -> None:
    creds = Credentials("alice", "hunter2-secret", "refresh-secret")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2-secret" not in text and "refresh-secret" not in text
        assert "alice" in text


@pytest.fixture
def helper_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH entry with fake docker-credential-* helpers that answer from a small table."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    scripts = {
        "kilntest": (
            'read server; echo "$server" >> ' + str(log) + "\n"
            'case "$server" in\n'
            '  reg.example:5000) echo \'{"ServerURL":"reg.example:5000","Username":"helped","Secret":"s3"}\';;\n'
            '  https://index.docker.io/v1/) echo \'{"Username":"<token>","Secret":"hub-refresh"}\';;\n'
            '  *) echo "credentials not found in native keychain"; exit 1;;\n'
            "esac\n"
        ),
        "broken": "echo 'leaked-secret-output'; exit 3\n",
    }
    for name, body in scripts.items():
        path = bindir / f"docker-credential-{name}"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_cred_helpers(helper_dir: Path) -> None:
    cfg = write(helper_dir / "config.json", {"credHelpers": {"reg.example:5000": "kilntest"},
                                             "auths": {"reg.example:5000": {"auth": b64("not:used")}}})  # fmt: skip
    assert lookup_credentials("reg.example:5000", cfg) == Credentials("helped", "s3")
    assert (helper_dir / "helper.log").read_text().split() == ["reg.example:5000"]


def test_creds_store_for_docker_hub_gives_identity_token(helper_dir: Path) -> None:
    cfg = write(helper_dir / "config.json", {"credsStore": "kilntest"})
    assert lookup_credentials("docker.io", cfg) == Credentials(identity_token="hub-refresh")
    assert lookup_credentials("unknown.example", cfg) == ANONYMOUS


def test_broken_helper(helper_dir: Path) -> None:
    cfg = write(helper_dir / "config.json", {"credsStore": "broken"})
    with pytest.raises(AuthError) as info:
        lookup_credentials("reg.example", cfg)
    assert "docker-credential-broken" in str(info.value)
    assert "leaked-secret-output" not in str(info.value)
    cfg = write(helper_dir / "config.json", {"credsStore": "absent"})
    with pytest.raises(AuthError, match="not found"):
        lookup_credentials("reg.example", cfg)
