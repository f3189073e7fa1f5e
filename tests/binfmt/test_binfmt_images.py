"""The arm64 base images: configs that say linux/arm64 (variant v8, as Docker Hub's), files that are aarch64 ELF
binaries (read from their headers here, `file` may be missing), and the Debian one running under emulation."""

from __future__ import annotations

import struct
from pathlib import Path

from kiln.binfmt import Emulation
from support.base_images import OciImage
from support.images import flatten_layout, read_layer_file, skopeo_inspect, verify_layout
from support.procs import run

EM_AARCH64 = 183


def elf_identity(data: bytes) -> tuple[int, int, int, int]:
    """(class, data encoding, e_type, e_machine) of an ELF file, after checking its magic."""
    assert data[:4] == b"\x7fELF", data[:4]
    order = "<" if data[5] == 1 else ">"
    e_type, e_machine = struct.unpack(order + "HH", data[16:20])
    return data[4], data[5], e_type, e_machine


def _assert_arm64_config(image: OciImage) -> None:
    verify_layout(image.layout, image.tag)
    config = skopeo_inspect(image.ref).config
    assert (config["os"], config["architecture"], config.get("variant")) == ("linux", "arm64", "v8")


def test_busybox_arm64_image(busybox_arm64_image: OciImage) -> None:
    _assert_arm64_config(busybox_arm64_image)
    binary = read_layer_file(busybox_arm64_image.layout, busybox_arm64_image.tag, "/bin/busybox")
    assert elf_identity(binary) == (2, 1, 2, EM_AARCH64)  # 64-bit little-endian static executable
    tree = flatten_layout(busybox_arm64_image.layout, busybox_arm64_image.tag)
    assert tree["/bin/sh"].link == "/bin/busybox" and tree["/bin/uname"].link == "/bin/busybox"
    assert (tree["/home/app"].uid, tree["/tmp"].mode) == (1000, 0o1777)


def test_elf_identity_tells_the_host_apart() -> None:
    """The check above can fail: the host's own busybox is x86-64 (EM_X86_64 62)."""
    assert elf_identity(Path("/bin/busybox").read_bytes()[:20])[3] != EM_AARCH64


def test_debian_arm64_image(debian_arm64_image: OciImage, arm64_emulation: Emulation, tmp_path: Path) -> None:
    _assert_arm64_config(debian_arm64_image)
    layout, tag = debian_arm64_image.layout, debian_arm64_image.tag
    for path in ("/usr/bin/bash", "/usr/bin/dpkg", "/usr/lib/aarch64-linux-gnu/libc.so.6"):
        cls, enc, e_type, machine = elf_identity(read_layer_file(layout, tag, path))
        assert (cls, enc, machine) == (2, 1, EM_AARCH64), path
        assert e_type == 3, path  # Debian builds PIEs and shared objects: ET_DYN
    assert b"\nArchitecture: arm64\n" in read_layer_file(layout, tag, "/var/lib/dpkg/status")
    bundle = tmp_path / "rootfs"
    run(["umoci", "raw", "unpack", "--image", f"{layout}:{tag}", bundle])
    # In a chroot, where the host's interpreter path does not exist: the entry's F flag at work.
    out = run(["chroot", bundle, "/usr/bin/dpkg", "--print-architecture"]).stdout
    assert out == b"arm64\n"
