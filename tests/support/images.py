"""Reading images independently of kiln: OCI layouts by hand, rootfs through umoci, configs through skopeo.

Helpers return plain data (dicts, dataclasses) and the compare helpers return readable line diffs, so a test
failure shows which path or field differs rather than two large reprs.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from support.mounts import remove_tree
from support.procs import run

MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
REF_NAME = "org.opencontainers.image.ref.name"


# --- OCI layouts, read by hand ------------------------------------------------------------------------


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return Path(layout) / "blobs" / algorithm / encoded


def read_blob_json(layout: Path, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(blob_path(layout, digest).read_bytes())
    return data


def manifest_descriptor(layout: Path, tag: str) -> dict[str, Any]:
    """The index.json entry for tag; a nested index resolves to its linux/amd64 (or only) manifest."""
    index = json.loads((Path(layout) / "index.json").read_text())
    tagged = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) == tag]
    if not tagged:
        names = [m.get("annotations", {}).get(REF_NAME) for m in index.get("manifests", [])]
        raise AssertionError(f"no tag {tag!r} in {layout}/index.json (tags: {names})")
    descriptor: dict[str, Any] = tagged[-1]
    while descriptor["mediaType"] in INDEX_TYPES:
        nested = read_blob_json(layout, descriptor["digest"])["manifests"]
        matching = [
            m for m in nested
            if m.get("platform", {}).get("os") == "linux" and m.get("platform", {}).get("architecture") == "amd64"
        ]  # fmt: skip
        descriptor = (matching or nested)[0]
    return descriptor


def read_manifest(layout: Path, tag: str) -> dict[str, Any]:
    return read_blob_json(layout, manifest_descriptor(layout, tag)["digest"])


def read_config(layout: Path, tag: str) -> dict[str, Any]:
    return read_blob_json(layout, read_manifest(layout, tag)["config"]["digest"])


def verify_layout(layout: Path, tag: str) -> None:
    """Check that tag resolves and every blob it references exists with its recorded size and digest."""
    _verify_blobs(layout, manifest_descriptor(layout, tag))


def _verify_blobs(layout: Path, descriptor: dict[str, Any]) -> None:
    """The blob a descriptor names and every blob below it (an index's manifests, a manifest's config and
    layers)."""
    document = read_blob_json(layout, descriptor["digest"])
    if "manifests" in document:
        _check_blob(layout, descriptor)
        for entry in document["manifests"]:
            _verify_blobs(layout, entry)
        return
    for desc in [descriptor, document["config"], *document["layers"]]:
        _check_blob(layout, desc)


def _check_blob(layout: Path, desc: dict[str, Any]) -> None:
    path = blob_path(layout, desc["digest"])
    if not path.is_file():
        raise AssertionError(f"{layout}: blob {desc['digest']} is missing")
    if path.stat().st_size != desc["size"]:
        raise AssertionError(f"{layout}: blob {desc['digest']} has size {path.stat().st_size}, not {desc['size']}")
    algorithm, _, encoded = desc["digest"].partition(":")
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != encoded:
        raise AssertionError(f"{layout}: blob {desc['digest']} does not match its digest")


# --- layers as tar streams ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TarEntry:
    """One entry of a layer tar, as tarfile reads it (independent of kiln's own tar code)."""

    name: str
    """Normalised: no leading './' or '/', no trailing '/'."""
    type: str
    """file, dir, symlink, hardlink, char, block, fifo"""
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    mtime: float
    pax_headers: dict[str, str] = field(default_factory=dict)
    raw_name: str = ""


_TAR_TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
}  # fmt: skip


def normalise_tar_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") or "."


def open_layer(layout: Path, descriptor: dict[str, Any]) -> IO[bytes]:
    """The uncompressed tar stream of a layer blob (gzip, zstd or plain, detected from its first bytes)."""
    # The caller closes the stream, which closes the file.
    f: IO[bytes] = open(blob_path(layout, descriptor["digest"]), "rb")  # noqa: SIM115
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    if magic == b"\x28\xb5\x2f\xfd":
        import zstandard

        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
        return reader
    return f


def layer_entries(layout: Path, tag: str) -> list[list[TarEntry]]:
    """For each layer (base first), its tar entries in archive order, whiteouts included."""
    result = []
    for descriptor in read_manifest(layout, tag)["layers"]:
        entries = []
        with open_layer(layout, descriptor) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                entries.append(
                    TarEntry(
                        name=normalise_tar_name(info.name), type=_TAR_TYPES.get(info.type, repr(info.type)),
                        mode=info.mode, uid=info.uid, gid=info.gid, size=info.size,
                        linkname=info.linkname, mtime=info.mtime, pax_headers=dict(info.pax_headers),
                        raw_name=info.name,
                    )  # fmt: skip
                )
        result.append(entries)
    return result


def read_layer_file(layout: Path, tag: str, path: str) -> bytes:
    """The content of path in the topmost layer that has it as a regular file (whiteouts not followed)."""
    wanted = normalise_tar_name(path)
    found: bytes | None = None
    for descriptor in read_manifest(layout, tag)["layers"]:
        with open_layer(layout, descriptor) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                if normalise_tar_name(info.name) == wanted and info.isfile():
                    member = tar.extractfile(info)
                    assert member is not None
                    found = member.read()
    if found is None:
        raise AssertionError(f"{path} is not a file in any layer of {layout}:{tag}")
    return found


def layer_file_sets(layout: Path, tag: str) -> list[list[str]]:
    """For each layer, the paths in its tar (archive order, normalised names, whiteouts included)."""
    return [[e.name for e in entries] for entries in layer_entries(layout, tag)]


# --- the flattened root file system ------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """What a file in an unpacked rootfs looks like. mtime is kept but left out of equality."""

    type: str
    """file, dir, symlink, char, block, fifo, socket"""
    mode: int
    """permission bits including setuid/setgid/sticky (stat.S_IMODE)"""
    uid: int
    gid: int
    size: int = 0
    sha256: str | None = None
    link: str | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    nlink: int = 1
    rdev: tuple[int, int] | None = None
    mtime: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        parts = [self.type, f"{self.mode:04o}", f"{self.uid}:{self.gid}"]
        if self.type == "file":
            parts.append(f"size={self.size} sha256={(self.sha256 or '')[:12]}")
        if self.link is not None:
            parts.append(f"-> {self.link}")
        if self.nlink != 1 and self.type != "dir":
            parts.append(f"nlink={self.nlink}")
        if self.rdev is not None:
            parts.append(f"dev={self.rdev[0]},{self.rdev[1]}")
        if self.xattrs:
            parts.append("xattrs=" + ",".join(k for k, _ in self.xattrs))
        return " ".join(parts)


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"), (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "unknown"


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def scan_tree(root: Path) -> dict[str, FileInfo]:
    """Every path below root (as '/a/b'), described by lstat, content hash, link target and xattrs."""
    tree: dict[str, FileInfo] = {}
    root_str = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root_str):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            kind = _file_type(st.st_mode)
            try:
                names = sorted(os.listxattr(full, follow_symlinks=False))
                xattrs = tuple((n, os.getxattr(full, n, follow_symlinks=False)) for n in names)
            except OSError:
                xattrs = ()
            tree["/" + os.path.relpath(full, root_str)] = FileInfo(
                type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                size=st.st_size if kind == "file" else 0,
                sha256=_sha256_file(full) if kind == "file" else None,
                link=os.readlink(full) if kind == "symlink" else None,
                xattrs=xattrs, nlink=st.st_nlink if kind != "dir" else 1,
                rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
                mtime=st.st_mtime,
            )  # fmt: skip
    return tree


def flatten_layout(layout: Path, tag: str, workdir: Path | None = None) -> dict[str, FileInfo]:
    """Unpack the image with umoci (all layers applied, whiteouts honoured) and describe its rootfs."""
    scratch = Path(tempfile.mkdtemp(prefix="flatten-", dir=workdir))
    try:
        rootfs = scratch / "rootfs"
        rootless = ["--rootless"] if os.geteuid() != 0 else []
        # `raw unpack` skips the mtree manifest `umoci unpack` writes, which costs seconds on big images.
        run(["umoci", "raw", "unpack", *rootless, "--image", f"{layout}:{tag}", rootfs])
        return scan_tree(rootfs)
    finally:
        remove_tree(scratch)


# --- skopeo ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inspected:
    manifest: dict[str, Any]
    """The raw manifest (or index) as stored."""
    config: dict[str, Any]
    """The image config (of the linux/amd64 image when the reference names an index)."""
    manifest_digest: str


def skopeo_inspect(ref: str, flags: list[str] | None = None) -> Inspected:
    """Inspect ref (oci:PATH:TAG, docker://HOST/REPO:TAG, ...) with skopeo. flags: e.g. registry.tool_flags()."""
    flags = flags or []
    raw = run(["skopeo", "inspect", *flags, "--raw", ref]).stdout
    config = json.loads(run(["skopeo", "inspect", *flags, "--config", "--raw", ref]).stdout)
    return Inspected(
        manifest=json.loads(raw), config=config, manifest_digest="sha256:" + hashlib.sha256(raw).hexdigest()
    )


# --- comparing -----------------------------------------------------------------------------------------


def diff_trees(
    expected: dict[str, FileInfo],
    actual: dict[str, FileInfo],
    *,
    ignore_paths: set[str] | None = None,
    ignore_fields: set[str] | None = None,
) -> list[str]:
    """Readable differences: '- path' only expected, '+ path' only actual, '~ path: field a != b'."""
    ignore_paths = ignore_paths or set()
    ignore_fields = (ignore_fields or set()) | {"mtime"}
    compared = [f.name for f in fields(FileInfo) if f.name not in ignore_fields]
    lines = []
    for path in sorted(set(expected) | set(actual)):
        if path in ignore_paths or any(path.startswith(p.rstrip("/") + "/") for p in ignore_paths):
            continue
        if path not in actual:
            lines.append(f"- {path}: {expected[path].describe()}")
        elif path not in expected:
            lines.append(f"+ {path}: {actual[path].describe()}")
        else:
            a, b = expected[path], actual[path]
            for name in compared:
                va, vb = getattr(a, name), getattr(b, name)
                if va != vb:
                    if name == "mode":
                        va, vb = f"{va:04o}", f"{vb:04o}"
                    lines.append(f"~ {path}: {name} {va} != {vb}")
    return lines


def assert_trees_equal(expected: dict[str, FileInfo], actual: dict[str, FileInfo], **kwargs: Any) -> None:
    lines = diff_trees(expected, actual, **kwargs)
    if lines:
        shown = lines[:80] + ([f"... and {len(lines) - 80} more"] if len(lines) > 80 else [])
        raise AssertionError("trees differ (- expected, + actual):\n" + "\n".join(shown))


def diff_json(expected: Any, actual: Any) -> list[str]:
    """A unified diff of two JSON values, pretty-printed with sorted keys."""
    a = json.dumps(expected, indent=2, sort_keys=True).splitlines()
    b = json.dumps(actual, indent=2, sort_keys=True).splitlines()
    return list(difflib.unified_diff(a, b, "expected", "actual", lineterm=""))


def assert_json_equal(expected: Any, actual: Any) -> None:
    lines = diff_json(expected, actual)
    if lines:
        raise AssertionError("JSON differs:\n" + "\n".join(lines))


def layer_tar(
    entries: list[tuple[str, str, str | bytes | None]], *, mtime: int = 1_700_000_000, file_mode: int = 0o644
) -> bytes:
    """A layer tar made with tarfile (not kiln) of ("dir"|"file"|"symlink"|"hardlink", name, data or link target)
    entries, in order; directories 0755, the rest `file_mode`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = mtime, 0o755 if kind == "dir" else file_mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = str(arg)
            else:
                info.size = len(arg or b"")
            tf.addfile(info, io.BytesIO(arg) if isinstance(arg, bytes) else None)
    return buf.getvalue()
