"""Image addresses: every spelling users type names the same image, and kiln prints one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.errors import UsageError
from kiln.transports.address import ImageAddress


@pytest.mark.parametrize("text", ["oci-layout:///l/img:v1", "oci-layout:/l/img:v1", "oci:/l/img:v1"])
def test_layout_spellings_agree(text: str) -> None:
    assert ImageAddress.parse(text) == ImageAddress("oci-layout", "/l/img", "v1")


@pytest.mark.parametrize("text", ["docker-archive:///a/img.tar", "docker-archive:/a/img.tar"])
def test_archive_spellings_agree(text: str) -> None:
    assert ImageAddress.parse(text) == ImageAddress("docker-archive", "/a/img.tar", None)


@pytest.mark.parametrize("text", ["docker://reg.test/app:1", "docker-image://reg.test/app:1", "reg.test/app:1"])
def test_registry_spellings_agree(text: str) -> None:
    assert ImageAddress.parse(text) == ImageAddress("registry", "reg.test/app:1")


def test_a_layout_digest_is_kept_and_printed_with_an_at() -> None:
    address = ImageAddress.parse("oci-layout:///l@sha256:" + "a" * 64)
    assert address.tag == "sha256:" + "a" * 64
    assert str(address) == "oci-layout:///l@sha256:" + "a" * 64


@pytest.mark.parametrize("address", [
    ImageAddress("oci-layout", "/l/img", "v1"), ImageAddress("oci-layout", "/l/img"),
    ImageAddress("docker-archive", "/a/img.tar"), ImageAddress("registry", "reg.test/app@sha256:" + "b" * 64),
])
def test_printed_form_parses_back(address: ImageAddress) -> None:
    assert ImageAddress.parse(str(address)) == address


def test_printed_forms() -> None:
    assert str(ImageAddress.layout("/out/app", "latest")) == "oci-layout:///out/app:latest"
    assert str(ImageAddress.archive("/out/app.tar")) == "docker-archive:///out/app.tar"
    assert str(ImageAddress.parse("docker://busybox")) == "busybox"


def test_a_colon_in_an_existing_directory_stays_in_the_path(tmp_path: Path) -> None:
    layout = tmp_path / "a:b"
    layout.mkdir()
    assert ImageAddress.parse(f"oci:{layout}") == ImageAddress("oci-layout", str(layout), None)


@pytest.mark.parametrize("text", ["/some/path", "./rel", "oci:", "docker://", "s3://bucket/x"])
def test_bad_addresses_are_usage_errors_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as err:
        ImageAddress.parse(text, "--build-context")
    assert err.value.flag == "--build-context"
