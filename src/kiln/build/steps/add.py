"""ADD: COPY plus two things: local tar archives are unpacked, and http(s) URLs are fetched.

Docker's rules: an archive is recognised by its content (tar, plain or gzip/bzip2/xz/zstd compressed), not its
name, and unpacked into the destination directory; a remote file is never unpacked (unless --unpack), gets mode
0600, and its Last-Modified header as mtime; --checksum is verified before anything is written.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import tarfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import requests

from kiln.build.steps.copy import Source, SourceTree, destination, run_copy
from kiln.build.steps.fscopy import Owner, WriteLog, make_dirs
from kiln.build.steps.owners import resolve_chown
from kiln.dockerfile.instructions import Add
from kiln.errors import BuildError, ImageFormatError, NotSupportedYet, SourceLocation
from kiln.layers.compress import open_decompressed
from kiln.layers.extract import extract_layer
from kiln.sandbox.paths import resolve_in_root

_URL_SCHEMES = ("http://", "https://")


def _is_url(src: str) -> bool:
    return src.startswith(_URL_SCHEMES)


def _is_git(src: str) -> bool:
    return src.startswith("git@") or src.endswith(".git") or "://" in src and not _is_url(src)


def is_archive(path: Path) -> bool:
    """Whether a file is a tar archive, possibly compressed (by content, as Docker decides)."""
    try:
        with open(path, "rb") as raw, open_decompressed(raw) as f:
            head = f.read(512)
    except (OSError, ImageFormatError, EOFError):
        return False
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return False
    return True


def _members(path: Path) -> list[str]:
    with open(path, "rb") as raw, open_decompressed(raw) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        return [posixpath.normpath(m.name.lstrip("/")) for m in tar if posixpath.normpath(m.name) not in (".", "/")]


def run_add(
    instr: Add,
    tree: SourceTree,
    root: Path,
    workdir: str,
    where: SourceLocation,
    extra: Sequence[Source],
    scratch: Path,
) -> list[str]:
    if instr.keep_git_dir or any(_is_git(s) for s in instr.sources):
        raise BuildError(str(NotSupportedYet("ADD <git repository>", "git sources")), where)
    urls = [s for s in instr.sources if _is_url(s)]
    local = [s for s in instr.sources if not _is_url(s)]
    fetched = [_fetch(u, instr, scratch, where) for u in urls]
    written: set[str] = set()
    unpack_local = instr.unpack is not False
    plain: list[Source] = list(extra) + fetched
    archives: list[Source] = []
    if local:
        for src in tree.resolve(local):
            if unpack_local and not src.is_dir and is_archive(src.path):
                archives.append(src)
            else:
                plain.append(src)
    if instr.unpack:
        # --unpack=true also unpacks archives fetched from URLs.
        archives.extend(s for s in fetched if is_archive(s.path))
        plain = [s for s in plain if s not in archives]
    if plain:
        as_copy = _only_sources(instr)
        written.update(run_copy(as_copy, _Fixed(plain, tree), root, workdir, where))
    if archives:
        dest, _ = destination(instr.dest, workdir)
        dest_host = resolve_in_root(root, dest)
        owner = resolve_chown(root, instr.chown) if instr.chown else None
        log = WriteLog(root)
        make_dirs(root, dest_host, owner, log)
        written.update(log.written)
        for arc in archives:
            with open(arc.path, "rb") as f:
                extract_layer(f, dest_host, mode="apply")
            rel_dest = os.path.relpath(dest_host, root)
            members = _members(arc.path)
            written.update(m if rel_dest == "." else f"{rel_dest}/{m}" for m in members)
            if owner is not None:
                _chown_members(dest_host, members, owner)
    return sorted(written)


def _chown_members(dest: Path, members: list[str], owner: Owner) -> None:
    for m in members:
        p = dest / m
        if os.path.lexists(p):
            os.chown(p, owner.uid, owner.gid, follow_symlinks=False)


class _Fixed:
    """A SourceTree over sources that are already resolved (fetched URLs, plain local files)."""

    def __init__(self, sources: list[Source], inner: SourceTree) -> None:
        self.sources = sources
        self.inner = inner
        self.keep_owners = inner.keep_owners

    def resolve(self, patterns: Sequence[str]) -> list[Source]:
        return list(self.sources)

    def walk(self, source: Source):  # type: ignore[no-untyped-def]
        return self.inner.walk(source)


def _only_sources(instr: Add) -> Add:
    from dataclasses import replace

    # One placeholder source per resolved one keeps run_copy's "several sources need a dir/" rule meaningful.
    return replace(instr, sources=tuple(instr.sources) or ("-",), heredocs=instr.heredocs)


def _fetch(url: str, instr: Add, scratch: Path, where: SourceLocation) -> Source:
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "index.html"
    target_dir = scratch / f"url{len(os.listdir(scratch))}"
    target_dir.mkdir()
    path = target_dir / name
    hasher = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=60) as resp:
            if resp.status_code >= 400:
                raise BuildError(f"ADD {url}: HTTP {resp.status_code} {resp.reason}", where)
            with open(path, "wb") as f:
                for chunk in resp.iter_content(1 << 20):
                    hasher.update(chunk)
                    f.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except requests.RequestException as e:
        raise BuildError(f"ADD {url}: {type(e).__name__}: {e}", where) from None
    if instr.checksum:
        want = instr.checksum if ":" in instr.checksum else "sha256:" + instr.checksum
        got = "sha256:" + hasher.hexdigest()
        if want.startswith("sha256:") and not got.startswith(want):
            raise BuildError(f"ADD {url}: checksum mismatch: expected {want}, got {got}", where)
        if not want.startswith("sha256:"):
            raise BuildError(f"ADD {url}: unsupported checksum algorithm in {want}", where)
    os.chmod(path, 0o600)
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (mtime, mtime))
        except (TypeError, ValueError):
            pass
    return Source(name, path, False)
