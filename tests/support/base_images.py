"""Base images built from Debian packages with tools other than kiln (tar + umoci), cached across runs.

Nothing is pulled from Docker Hub: busybox comes from the busybox-static package and debian from
debootstrap against the mirror this machine's apt uses. Layouts are built once per cache directory; a file
lock makes parallel pytest-xdist workers wait for the first one instead of building again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support.images import verify_layout
from support.locks import file_lock
from support.mounts import remove_tree
from support.procs import ToolError, run

# Bump when a recipe changes so old cached layouts are rebuilt.
RECIPE_VERSION = "1"
FIXED_TIME = "2024-01-01T00:00:00Z"
FIXED_EPOCH = 1704067200
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class OciImage:
    """An image in an OCI layout directory. Treat it as read-only: it is shared by every test."""

    layout: Path
    tag: str

    @property
    def ref(self) -> str:
        """The reference skopeo, buildah and umoci understand: oci:PATH:TAG."""
        return f"oci:{self.layout}:{self.tag}"


def default_cache_dir(repo_root: Path) -> Path:
    return Path(os.environ.get("KILN_TEST_CACHE") or repo_root / ".cache" / "test-images")


def cached_layout(cache: Path, name: str, key: dict[str, str], build: Callable[[Path, str], None]) -> OciImage:
    """The layout cache/<name>-<hash of key>, made by build(layout_dir, tag) unless a valid one exists."""
    digest = hashlib.sha256(json.dumps({"recipe": RECIPE_VERSION, **key}, sort_keys=True).encode()).hexdigest()
    image = OciImage(cache / f"{name}-{digest[:16]}", "latest")
    with file_lock(cache / f"{name}.lock"):
        if _is_valid(image):
            return image
        for stale in cache.glob(f"{name}-*"):
            remove_tree(stale)
        work = cache / f".{name}-building-{os.getpid()}"
        remove_tree(work)
        work.mkdir(parents=True)
        try:
            build(work / "layout", image.tag)
            verify_layout(work / "layout", image.tag)
            (work / "layout").rename(image.layout)
        finally:
            remove_tree(work)
    return image


def _is_valid(image: OciImage) -> bool:
    if not image.layout.is_dir():
        return False
    try:
        verify_layout(image.layout, image.tag)
        return True
    except (AssertionError, OSError, ValueError, KeyError):
        return False


def layout_from_rootfs(
    rootfs: Path,
    layout: Path,
    tag: str,
    *,
    config: list[str],
    created_by: str,
    created: str | None = None,
) -> None:
    """Pack rootfs as the single layer of a new image: GNU tar makes the layer, umoci the image around it.

    config: `umoci config` flags (--config.env=..., --config.cmd=...). With created set, timestamps are fixed
    so the same rootfs gives the same digests.
    """
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    layer = layout.parent / "layer.tar"
    names = sorted(os.listdir(rootfs))
    tar: list[str | os.PathLike[str]] = [
        "tar", "--create", "--file", layer, "--directory", rootfs, "--sort=name", "--numeric-owner", "--format=pax",
        "--pax-option=delete=atime,delete=ctime", "--xattrs", "--xattrs-include=*",
    ]  # fmt: skip
    if created:
        tar += [f"--mtime={created}", "--clamp-mtime"]
    run([*tar, "--", *names])
    history = ["--history.created_by", created_by] + (["--history.created", created] if created else [])
    run(["umoci", "raw", "add-layer", *history, "--image", f"{layout}:{tag}", layer])
    layer.unlink()
    timestamps = ["--created", created] if created else []
    run(["umoci", "config", "--no-history", "--os", "linux", "--architecture", "amd64", *timestamps, *config,
         "--image", f"{layout}:{tag}"])  # fmt: skip
    run(["umoci", "gc", "--layout", layout])


# --- busybox ---------------------------------------------------------------------------------------------

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
nogroup:x:65534:
"""


def busybox_version(binary: Path = Path("/bin/busybox")) -> str:
    return hashlib.sha256(binary.read_bytes()).hexdigest()


def make_busybox_rootfs(rootfs: Path, binary: Path = Path("/bin/busybox")) -> None:
    """/bin/busybox with a symlink per applet (as `busybox --install -s` makes them), users root, app, nobody."""
    for d, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("etc", 0o755),
                    ("root", 0o700), ("home/app", 0o755), ("tmp", 0o1777), ("var/tmp", 0o1777), ("dev", 0o755),
                    ("proc", 0o555), ("sys", 0o555)):  # fmt: skip
        (rootfs / d).mkdir(parents=True, exist_ok=True)
        os.chmod(rootfs / d, mode)
    shutil.copyfile(binary, rootfs / "bin/busybox")
    os.chmod(rootfs / "bin/busybox", 0o755)
    applets = run([binary, "--list-full"]).stdout.decode().split()
    for applet in applets:
        link = rootfs / applet
        if applet == "bin/busybox" or os.path.lexists(link):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    (rootfs / "etc/passwd").write_text(PASSWD)
    (rootfs / "etc/group").write_text(GROUP)
    for name in ("etc/passwd", "etc/group"):
        os.chmod(rootfs / name, 0o644)
    os.chown(rootfs / "home/app", 1000, 1000)


def build_busybox_layout(layout: Path, tag: str) -> None:
    rootfs = layout.parent / "rootfs"
    rootfs.mkdir()
    make_busybox_rootfs(rootfs)
    layout_from_rootfs(
        rootfs, layout, tag,
        config=[f"--config.env=PATH={DEFAULT_PATH}", "--config.cmd=sh"],
        created_by="kiln tests: busybox-static", created=FIXED_TIME,
    )  # fmt: skip


def busybox_image(cache: Path) -> OciImage:
    return cached_layout(cache, "busybox", {"busybox": busybox_version()}, build_busybox_layout)


# --- debian ----------------------------------------------------------------------------------------------


def apt_debian_mirror(suite: str = "bookworm") -> str:
    """The Debian archive URI this machine's apt uses for suite ($KILN_DEBIAN_MIRROR overrides)."""
    if os.environ.get("KILN_DEBIAN_MIRROR"):
        return os.environ["KILN_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                entry: dict[str, list[str]] = {
                    m.group(1).lower(): m.group(2).split()
                    for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE)
                }
                if "deb" in entry.get("types", []) and suite in entry.get("suites", []):
                    for uri in entry.get("uris", []):
                        if "security" not in uri:
                            return uri
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite and "security" not in words[1]:
                    return words[1]
    return "http://deb.debian.org/debian"


def debootstrap(rootfs: Path, suite: str, mirror: str, debs: Path, attempts: int = 3) -> None:
    """debootstrap --variant=minbase, retried on failure (mirrors flake); the .debs are kept in debs."""
    debs.mkdir(parents=True, exist_ok=True)
    errors = []
    for attempt in range(1, attempts + 1):
        remove_tree(rootfs)
        rootfs.mkdir(parents=True)
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", suite, str(rootfs), mirror],
            capture_output=True, timeout=1800, check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            return
        log = rootfs / "debootstrap/debootstrap.log"
        detail = log.read_text(errors="replace")[-3000:] if log.exists() else proc.stderr.decode()[-3000:]
        errors.append(f"attempt {attempt}: status {proc.returncode}\n{detail}")
        remove_tree(rootfs)  # unmounts the /proc and /sys debootstrap may have left
        time.sleep(5 * attempt)
    raise ToolError(
        f"debootstrap {suite} from {mirror} failed {attempts} times "
        f"(set KILN_DEBIAN_MIRROR to use another mirror):\n" + "\n".join(errors)
    )


def build_debian_layout(layout: Path, tag: str, suite: str, mirror: str, debs: Path) -> None:
    rootfs = layout.parent / "rootfs"
    debootstrap(rootfs, suite, mirror, debs)
    # Trim what a container image does not carry: device nodes (runtimes provide /dev), the host's
    # resolver and hostname (runtimes mount their own), apt's downloaded indexes.
    for d in ("dev", "var/lib/apt/lists", "var/cache/apt/archives", "debootstrap"):
        target = rootfs / d
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    remove_tree(child)
                elif child.name != "lock":
                    child.unlink()
    for f in ("etc/resolv.conf", "etc/hostname"):
        if os.path.lexists(rootfs / f):
            os.unlink(rootfs / f)
    if os.path.exists(rootfs / "var/cache/apt/archives"):
        (rootfs / "var/cache/apt/archives/partial").mkdir(exist_ok=True)
    layout_from_rootfs(
        rootfs, layout, tag,
        config=[f"--config.env=PATH={DEFAULT_PATH}", "--config.cmd=bash"],
        created_by=f"kiln tests: debootstrap --variant=minbase {suite} {mirror}",
    )  # fmt: skip
    remove_tree(rootfs)


def debian_image(cache: Path, suite: str = "bookworm") -> OciImage:
    mirror = apt_debian_mirror(suite)

    def build(layout: Path, tag: str) -> None:
        build_debian_layout(layout, tag, suite, mirror, cache / "debootstrap-debs")

    return cached_layout(cache, f"debian-{suite}", {"suite": suite, "mirror": mirror}, build)


# --- pushing ---------------------------------------------------------------------------------------------


def push(image: OciImage, dest_ref: str, dest_flags: list[str]) -> str:
    """Copy image to docker://dest_ref with skopeo; dest_flags from Registry.skopeo_flags('dest')."""
    run(["skopeo", "copy", "--quiet", *dest_flags, image.ref, f"docker://{dest_ref}"])
    return dest_ref
