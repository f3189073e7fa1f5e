"""Reference parsing, checked against Docker's normalisation (cases worked out by hand from its grammar)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import RegistryError
from kiln.transports.registry.reference import Reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("registry-1.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("docker.io/user/app:v2", "docker.io", "user/app", "v2", None),
        ("gcr.io/project/img", "gcr.io", "project/img", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("myhost:5000/app", "myhost:5000", "app", "latest", None),
        ("Example.COM/app", "Example.COM", "app", "latest", None),
        (f"busybox@{D}", "docker.io", "library/busybox", None, D),
        (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D),
        (f"reg.io:443/x/y:z@{D}", "reg.io:443", "x/y", "z", D),
        ("a/b__c/d-e/f.g:T_ag-1.0", "docker.io", "a/b__c/d-e/f.g", "T_ag-1.0", None),
        ("a--b", "docker.io", "library/a--b", "latest", None),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "string"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"localhost:5000/a:b@{D}", f"localhost:5000/a:b@{D}"),
    ],
)
def test_str(text: str, string: str) -> None:
    assert str(Reference.parse(text)) == string


def test_identifier_prefers_digest() -> None:
    assert Reference.parse(f"a:b@{D}").identifier == D
    assert Reference.parse("a:b").identifier == "b"
    assert Reference.parse("busybox").api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/x").api_host == "localhost:5000"


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "Busybox",
        "docker.io/Library/busybox",
        "busybox:",
        "busybox:-bad",
        ":tag",
        "a//b",
        "a/",
        "/a",
        "a@sha256:abc",
        "a@md5:" + "0" * 32,
        "a:" + "t" * 129,
        "-a",
        "a_",
        "a..b",
        "0123456789abcdef" * 4,
        "host:port/x",
        "reg.io/" + "a" * 260,
        "a@" + D + "@" + D,
        "foo bar",
    ],
)
def test_bad_references_name_themselves(text: str) -> None:
    with pytest.raises(RegistryError) as info:
        Reference.parse(text)
    assert text in str(info.value) or not text
    assert "invalid reference" in str(info.value)


_component = st.from_regex(r"[a-z0-9]{1,5}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,5}){0,2}", fullmatch=True)
_host = st.sampled_from(["docker.io", "gcr.io", "localhost", "localhost:5000", "127.0.0.1:8443", "r.example.com"])
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.from_regex(r"[0-9a-f]{64}", fullmatch=True).map(lambda h: "sha256:" + h)


@given(_host, st.lists(_component, min_size=1, max_size=4), st.none() | _tag, st.none() | _digest)
def test_round_trip(host: str, path: list[str], tag: str | None, digest: str | None) -> None:
    repository = "/".join(path)
    if host == "docker.io" and len(path) == 1:
        repository = "library/" + repository
    text = f"{host}/{'/'.join(path)}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = Reference.parse(text)
    assert ref.registry == host
    assert ref.repository == repository
    assert ref.tag == (tag if tag or digest else "latest")
    assert ref.digest == digest
    assert Reference.parse(str(ref)) == ref
