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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from support.images import blob_path, verify_layout
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
            _readable_by_all(image.layout)
            return image
        for stale in _older_layouts(cache, name):
            remove_tree(stale)
        work = cache / f".{name}-building-{os.getpid()}"
        remove_tree(work)
        work.mkdir(parents=True)
        try:
            build(work / "layout", image.tag)
            verify_layout(work / "layout", image.tag)
            _readable_by_all(work / "layout")
            (work / "layout").rename(image.layout)
        finally:
            remove_tree(work)
    return image


def _older_layouts(cache: Path, name: str) -> list[Path]:
    """Layouts of name made from other keys. Exactly name-<16 hex>: a plain name-* glob also matches other
    images whose name starts with this one (debian-bookworm-arm64-…, and its lock file) that another worker
    may be using."""
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{16}")
    return [path for path in cache.iterdir() if pattern.fullmatch(path.name) and path.is_dir()]


def _readable_by_all(layout: Path) -> None:
    """umoci writes index.json and blobs for their owner alone; the rootless tests' and bench's users read
    layouts too."""
    for path in (layout / "index.json", *(layout / "blobs" / "sha256").iterdir()):
        mode = path.stat().st_mode
        if mode & 0o044 != 0o044:
            path.chmod(mode | 0o444)


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
    architecture: str = "amd64",
    variant: str | None = None,
) -> None:
    """Pack rootfs as the single layer of a new image: GNU tar makes the layer, umoci the image around it.

    config: `umoci config` flags (--config.env=..., --config.cmd=...). With created set, timestamps are fixed
    so the same rootfs gives the same digests. architecture and variant: the config's platform.
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
    run(["umoci", "config", "--no-history", "--os", "linux", "--architecture", architecture, *timestamps, *config,
         "--image", f"{layout}:{tag}"])  # fmt: skip
    if variant:
        set_config_fields(layout, tag, {"variant": variant})
    run(["umoci", "gc", "--layout", layout])


def set_config_fields(layout: Path, tag: str, fields: dict[str, str]) -> None:
    """Set top-level fields of the tagged image's config (umoci config has no --variant): new config and
    manifest blobs, the index pointed at them; `umoci gc` drops the old ones."""

    def put(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    index = json.loads((layout / "index.json").read_text())
    [descriptor] = [d for d in index["manifests"]
                    if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    manifest = json.loads(blob_path(layout, descriptor["digest"]).read_bytes())
    config = json.loads(blob_path(layout, manifest["config"]["digest"]).read_bytes())
    config.update(fields)
    manifest["config"]["digest"], manifest["config"]["size"] = put(json.dumps(config).encode())
    descriptor["digest"], descriptor["size"] = put(json.dumps(manifest).encode())
    (layout / "index.json").write_text(json.dumps(index))


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


def make_busybox_rootfs(rootfs: Path, binary: Path = Path("/bin/busybox"), runner: Sequence[str] = ()) -> None:
    """/bin/busybox with a symlink per applet (as `busybox --install -s` makes them), users root, app, nobody.
    runner: what runs a foreign binary's --list-full (qemu-aarch64-static), so no binfmt_misc entry is needed."""
    for d, mode in (("bin", 0o755), ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("etc", 0o755),
                    ("root", 0o700), ("home/app", 0o755), ("tmp", 0o1777), ("var/tmp", 0o1777), ("dev", 0o755),
                    ("proc", 0o555), ("sys", 0o555)):  # fmt: skip
        (rootfs / d).mkdir(parents=True, exist_ok=True)
        os.chmod(rootfs / d, mode)
    shutil.copyfile(binary, rootfs / "bin/busybox")
    os.chmod(rootfs / "bin/busybox", 0o755)
    applets = run([*runner, binary, "--list-full"]).stdout.decode().split()
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


def debootstrap(rootfs: Path, suite: str, mirror: str, debs: Path, attempts: int = 3, arch: str | None = None) -> None:
    """debootstrap --variant=minbase, retried on failure (mirrors flake); the .debs are kept in debs. A foreign
    arch needs its binaries to run here (a binfmt_misc entry with F: debootstrap chroots into the target)."""
    debs.mkdir(parents=True, exist_ok=True)
    errors = []
    for attempt in range(1, attempts + 1):
        remove_tree(rootfs)
        rootfs.mkdir(parents=True)
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--cache-dir={debs}", *([f"--arch={arch}"] if arch else []),
             suite, str(rootfs), mirror],
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


def build_debian_layout(layout: Path, tag: str, suite: str, mirror: str, debs: Path, arch: str | None = None) -> None:
    rootfs = layout.parent / "rootfs"
    debootstrap(rootfs, suite, mirror, debs, arch=arch)
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
    arch_flag = f"--arch={arch} " if arch else ""
    layout_from_rootfs(
        rootfs, layout, tag,
        config=[f"--config.env=PATH={DEFAULT_PATH}", "--config.cmd=bash"],
        created_by=f"kiln tests: debootstrap --variant=minbase {arch_flag}{suite} {mirror}",
        architecture=arch or "amd64", variant=VARIANTS.get(arch or "amd64"),
    )  # fmt: skip
    remove_tree(rootfs)


def debian_image(cache: Path, suite: str = "bookworm") -> OciImage:
    mirror = apt_debian_mirror(suite)

    def build(layout: Path, tag: str) -> None:
        build_debian_layout(layout, tag, suite, mirror, cache / "debootstrap-debs")

    return cached_layout(cache, f"debian-{suite}", {"suite": suite, "mirror": mirror}, build)


# --- arm64 ----------------------------------------------------------------------------------------------
# Images of another architecture, for multi-platform builds. Their configs say what Docker Hub's arm64 images
# say: architecture arm64, variant v8.

VARIANTS = {"arm64": "v8"}
QEMU = {"arm64": "qemu-aarch64-static"}


def download_deb(package: str, arch: str, suite: str, mirror: str, work: Path, attempts: int = 3) -> Path:
    """PACKAGE_VERSION_ARCH.deb of another architecture, fetched by apt with a configuration of its own (its
    sources, lists and caches under work): verified as apt verifies, the host's dpkg architectures and package
    lists untouched."""
    for d in ("lists/partial", "cache/archives/partial", "download"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "status").touch()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (work / "sources.list").write_text(f"deb [arch={arch} signed-by={keyring}] {mirror} {suite} main\n")
    options = [f"-oDir::Etc::SourceList={work / 'sources.list'}", "-oDir::Etc::SourceParts=/nonexistent",
               f"-oDir::State::Lists={work / 'lists'}", f"-oDir::State::status={work / 'status'}",
               f"-oDir::Cache={work / 'cache'}", f"-oAPT::Architecture={arch}", f"-oAPT::Architectures::={arch}",
               "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1", "-q"]  # fmt: skip
    failures = []
    for attempt in range(1, attempts + 1):
        update = run(["apt-get", *options, "update"], check=False)
        download = update.returncode == 0 and run(
            ["apt-get", *options, "download", f"{package}:{arch}"], cwd=work / "download", check=False)
        debs = sorted((work / "download").glob(f"{package}_*_{arch}.deb"))
        if download and download.returncode == 0 and len(debs) == 1:
            return debs[0]
        last = download or update
        failures.append(f"attempt {attempt}: status {last.returncode}: {last.stderr.decode(errors='replace')[-1500:]}")
        time.sleep(5 * attempt)
    raise ToolError(f"apt-get download {package}:{arch} from {mirror} {suite} failed {attempts} times "
                    "(set KILN_DEBIAN_MIRROR to use another mirror):\n" + "\n".join(failures))


def build_foreign_busybox_layout(layout: Path, tag: str, arch: str, suite: str, mirror: str) -> None:
    """The busybox image's recipe with Debian's busybox-static of arch."""
    work = layout.parent
    deb = download_deb("busybox-static", arch, suite, mirror, work / "apt")
    run(["dpkg-deb", "--extract", deb, work / "deb"])
    rootfs = work / "rootfs"
    rootfs.mkdir()
    make_busybox_rootfs(rootfs, work / "deb/bin/busybox", runner=[QEMU[arch]])
    layout_from_rootfs(
        rootfs, layout, tag,
        config=[f"--config.env=PATH={DEFAULT_PATH}", "--config.cmd=sh"],
        created_by=f"kiln tests: busybox-static {arch} ({deb.name})", created=FIXED_TIME,
        architecture=arch, variant=VARIANTS.get(arch),
    )  # fmt: skip


def busybox_arm64_image(cache: Path, suite: str = "bookworm") -> OciImage:
    """busybox_image's layout for linux/arm64 (/bin/busybox an aarch64 binary); building it needs
    qemu-aarch64-static but no binfmt_misc entry."""
    mirror = apt_debian_mirror(suite)

    def build(layout: Path, tag: str) -> None:
        build_foreign_busybox_layout(layout, tag, "arm64", suite, mirror)

    return cached_layout(cache, "busybox-arm64", {"suite": suite, "mirror": mirror, "arch": "arm64"}, build)


def debian_arm64_image(cache: Path, suite: str = "bookworm") -> OciImage:
    """debian_image's layout for linux/arm64. Building it (once per cache) runs debootstrap's second stage under
    qemu: aarch64 binaries must run here through an entry with F (support.binfmt.acquire)."""
    mirror = apt_debian_mirror(suite)

    def build(layout: Path, tag: str) -> None:
        build_debian_layout(layout, tag, suite, mirror, cache / "debootstrap-debs-arm64", arch="arm64")

    return cached_layout(cache, f"debian-{suite}-arm64", {"suite": suite, "mirror": mirror, "arch": "arm64"}, build)


# --- pushing ---------------------------------------------------------------------------------------------


def push(image: OciImage, dest_ref: str, dest_flags: list[str]) -> str:
    """Copy image (every image of it, if it is an index) to docker://dest_ref with skopeo; dest_flags from
    Registry.skopeo_flags('dest')."""
    run(["skopeo", "copy", "--quiet", "--all", *dest_flags, image.ref, f"docker://{dest_ref}"])
    return dest_ref


# --- debian with git ------------------------------------------------------------------------------------


def build_debian_git_layout(layout: Path, tag: str, base: OciImage, packages: Sequence[str]) -> None:
    """``base`` (a debian layout) with ``packages`` installed by apt-get in a chroot, from the mirror its
    sources.list names; one layer, as the other bases. The chroot's /dev and /proc live in a mount namespace of
    their own (unshare), so nothing is left mounted whatever happens."""
    rootfs = layout.parent / "rootfs"
    run(["umoci", "raw", "unpack", "--image", f"{base.layout}:{base.tag}", rootfs])
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    install = ("apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -q -y "
               f"--no-install-recommends {' '.join(packages)}")
    script = (f"mount --rbind /dev {rootfs}/dev && mount -t proc proc {rootfs}/proc && "
              f"exec chroot {rootfs} sh -c '{install}'")
    errors = []
    for attempt in range(1, 4):  # mirrors flake
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, timeout=1800, check=False)
        if proc.returncode == 0:
            break
        errors.append(f"attempt {attempt}: status {proc.returncode}: {proc.stderr.decode(errors='replace')[-1500:]}")
        time.sleep(5 * attempt)
    else:
        raise ToolError(f"apt-get install {' '.join(packages)} failed 3 times:\n" + "\n".join(errors))
    # apt's indexes and caches, and documentation and translations: a smaller layer is a faster test.
    for d in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        for child in (rootfs / d).iterdir():
            if child.is_dir() and not child.is_symlink():
                remove_tree(child)
            elif child.name != "lock":
                child.unlink()
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for f in ("etc/resolv.conf", "var/cache/ldconfig/aux-cache", "var/log/apt/eipp.log.xz"):
        if os.path.lexists(rootfs / f):
            os.unlink(rootfs / f)
    layout_from_rootfs(
        rootfs, layout, tag,
        config=[f"--config.env=PATH={DEFAULT_PATH}", "--config.cmd=bash"],
        created_by=f"kiln tests: apt-get install {' '.join(packages)}",
    )  # fmt: skip
    remove_tree(rootfs)


def debian_git_image(cache: Path, base: OciImage) -> OciImage:
    """The debian test image with git and openssh-client (a git clone over SSH inside RUN)."""
    packages = ("git", "openssh-client")

    def build(layout: Path, tag: str) -> None:
        build_debian_git_layout(layout, tag, base, packages)

    key = {"base": base.layout.name, "packages": " ".join(packages), "trimmed": "doc man locale apt-cache"}
    return cached_layout(cache, "debian-git", key, build)
