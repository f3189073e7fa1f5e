"""COPY and ADD: sources from the build context, another stage or an image, written into the stage's root.

Docker's semantics: a directory source copies its contents; a file copied to a destination ending in "/" (or to an
existing directory, or with several sources) keeps its name inside it; missing destination directories are
created (0755, or with the --chmod mode as BuildKit >= 0.21 does); owners are root unless --chown says
otherwise (or, for --from, the source's own); --chmod overrides modes. ADD also unpacks local tar archives and
fetches URLs. Every path written is returned: those are the paths the step declares, and they all go into its
layer.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kiln.context.dockerignore import DockerIgnore
from kiln.context.gomatch import glob_regex, has_wildcards
from kiln.context.opener import BuildContext
from kiln.context.sources import iter_tree, resolve_sources
from kiln.dockerfile.flags import Chmod
from kiln.dockerfile.instructions import Add, Copy
from kiln.engine.steps.fscopy import (
    CopyAttrs,
    ModeFn,
    Owner,
    WriteLog,
    copy_entry,
    copy_tree_contents,
    make_dirs,
    new_dir_mode,
)
from kiln.engine.steps.owners import resolve_chown
from kiln.errors import BuildError, ContextError, SourceLocation
from kiln.rootfs.paths import resolve_in_root


@dataclass(frozen=True)
class Source:
    name: str  # the name the copy gets inside a destination directory
    path: Path  # on disk, top-level symlinks followed
    is_dir: bool
    rel: str = ""  # the path as named from the source root (COPY --parents keeps it under the destination)


class SourceTree(Protocol):
    """Where COPY reads from: the build context (with .dockerignore) or another root filesystem."""

    keep_owners: bool

    def resolve(self, patterns: Sequence[str]) -> list[Source]: ...

    def walk(self, source: Source) -> Iterator[str]: ...


class ContextTree:
    keep_owners = False

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx

    def resolve(self, patterns: Sequence[str]) -> list[Source]:
        return [
            Source(posixpath.basename(r.rel) or ".", r.path, r.is_dir, r.rel)
            for r in resolve_sources(self.ctx, patterns)
        ]

    def host_path(self, rel: str) -> Path:
        """Where the context path ``rel`` is, symlinks in it not followed (COPY --parents' directories)."""
        return self.ctx.root / rel

    def link_source(self, rel: str) -> Source | None:
        """The symlink ``rel`` itself, unfollowed, if the context has it below real directories and neither
        .dockerignore nor kiln hides it; None otherwise."""
        head = posixpath.dirname(rel)
        path = self.ctx.root / rel
        real_root = os.path.realpath(self.ctx.root)
        if (
            not rel
            or not path.is_symlink()
            or os.path.realpath(self.ctx.root / head) != os.path.normpath(os.path.join(real_root, head))
        ):
            return None
        if self.ctx.is_hidden(rel) or (self.ctx.ignore and self.ctx.ignore.matches(rel)):
            return None
        return Source(posixpath.basename(rel), path, False, rel)

    def walk(self, source: Source) -> Iterator[str]:
        # iter_tree's paths are already relative to the directory walked: stripping its name from them again
        # would turn "a/k" (in a directory a) into "k".
        yield from iter_tree(self.ctx, os.path.relpath(source.path, self.ctx.root))


class RootfsTree:
    """Another stage's (or an image's) root: owners kept, no .dockerignore, symlinks resolved inside it."""

    keep_owners = True

    def __init__(self, root: Path, what: str) -> None:
        self.root = root
        self.what = what

    def resolve(self, patterns: Sequence[str]) -> list[Source]:
        out: list[Source] = []
        for pattern in patterns:
            found = self._glob(pattern)
            if not found:
                raise ContextError(f"{pattern}: not found in {self.what}")
            out.extend(found)
        return out

    def host_path(self, rel: str) -> Path:
        """Where ``rel`` is in this root: its directory resolved inside the root, its last name not followed."""
        head, name = posixpath.split(rel)
        return resolve_in_root(self.root, head) / name if head else self.root / name

    def link_source(self, rel: str) -> Source | None:
        """The symlink ``rel`` itself, unfollowed (its directory resolved inside the root); None if none."""
        path = self.host_path(rel) if rel else self.root
        return Source(posixpath.basename(rel), path, False, rel) if rel and path.is_symlink() else None

    def _glob(self, pattern: str) -> list[Source]:
        parts = [p for p in posixpath.normpath("/" + pattern).split("/") if p]
        if not any(ch in pattern for ch in "*?["):
            host = resolve_in_root(self.root, "/".join(parts))
            if not os.path.lexists(host):
                return []
            return [Source(parts[-1] if parts else ".", host, host.is_dir(), "/".join(parts))]
        current = [("", self.root)]
        for part in parts:
            nxt: list[tuple[str, Path]] = []
            for rel, host in current:
                host = resolve_in_root(self.root, rel) if rel else self.root
                if any(ch in part for ch in "*?["):
                    rx = glob_regex(part)
                    try:
                        names = sorted(os.listdir(host))
                    except (NotADirectoryError, FileNotFoundError):
                        continue
                    nxt.extend((f"{rel}/{n}", host / n) for n in names if rx.fullmatch(n))
                else:
                    nxt.append((f"{rel}/{part}", host / part))
            current = nxt
        out = []
        for rel, _ in current:
            host = resolve_in_root(self.root, rel)
            if os.path.lexists(host):
                out.append(Source(posixpath.basename(rel), host, host.is_dir(), rel.lstrip("/")))
            elif os.path.islink(self.host_path(rel.lstrip("/"))):
                # BuildKit follows what a wildcard matched and fails on a dangling symlink ("not found"), as
                # it does for one named; skipping it would copy less than the Dockerfile says.
                raise ContextError(f"{pattern}: {rel}: symlink to a path that does not exist in {self.what}")
        return out

    def walk(self, source: Source) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(source.path):
            dirnames.sort()
            base = os.path.relpath(dirpath, source.path)
            for name in sorted(dirnames + filenames):
                yield name if base == "." else f"{base}/{name}"


def _chmod_fn(chmod: Chmod | None) -> ModeFn | None:
    if chmod is None:
        return None
    return lambda mode: chmod.apply(mode, stat.S_ISDIR(mode))


def destination(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute destination path, and whether its spelling makes it a directory ("dir/", ".", "dir/.")."""
    is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not posixpath.isabs(dest):
        dest = posixpath.join(workdir or "/", dest)
    return posixpath.normpath(dest), is_dir


def run_copy(
    instr: Copy | Add,
    tree: SourceTree,
    root: Path,
    workdir: str,
    where: SourceLocation,
    extra_sources: Sequence[Source] = (),
) -> list[str]:
    """Copy ``instr``'s sources from ``tree`` into ``root``; returns the image paths written."""
    dest, dest_dir_syntax = destination(instr.dest, workdir)
    try:
        owner = resolve_chown(root, instr.chown) if instr.chown else None
        if isinstance(instr, Copy) and instr.parents:
            sources = [*_parents_sources(tree, instr.sources), *extra_sources]
        else:
            sources = [*tree.resolve(instr.sources), *extra_sources] if instr.sources else list(extra_sources)
    except ContextError as e:
        raise BuildError(str(e), where) from None
    named = _named(instr.sources)
    excludes = _excludes(instr, where)
    if excludes:
        # --exclude patterns are matched against paths relative to each source: BuildKit's copy matches what
        # lies below a source, never the source itself (its relative path is empty), so a source named without
        # a wildcard is always copied. What a wildcard matched is filtered by its name, as the reference's
        # `COPY --exclude=*.txt hom* /mydir/` shows.
        sources = [src for src in sources if _norm(src.rel) in named or not excludes.matches(src.rel or src.name)]
    if not dest_dir_syntax and _several_sources(instr, sources):
        raise BuildError(
            f"When using {instr.keyword} with more than one source file, the destination must be a directory "
            "and end with a /",
            where,
        )
    parents = isinstance(instr, Copy) and instr.parents
    log = WriteLog(root)
    attrs = CopyAttrs(
        owner=owner if owner is not None else (None if tree.keep_owners else Owner(0, 0)),
        chmod=_chmod_fn(instr.mode),
    )
    # The directories the copy creates (the destination of a directory, missing parents) get the --chmod mode.
    dir_mode = new_dir_mode(attrs.chmod)
    try:
        dest_host = resolve_in_root(root, dest)
        into_dir = dest_dir_syntax or len(sources) > 1 or (dest_host.is_dir() and not dest_host.is_symlink())
        for i, src in enumerate(sources):
            if i and (_norm(src.rel) in named or _norm(sources[i - 1].rel) in named):
                # BuildKit copies each source of the instruction in an action of its own: files are hardlinked
                # to each other within one source (a wildcard's matches included), never across two.
                log.links.clear()
            # --parents keeps the source's own directories under the destination, as `cp --parents` does.
            base = dest_host / posixpath.dirname(src.rel) if parents and src.rel else dest_host
            host_path = getattr(tree, "host_path", None)
            if parents and src.rel and host_path is not None:
                base = _parent_dirs(root, dest_host, src.rel, host_path, attrs, log, dir_mode)
                unfollowed = host_path(src.rel)
                if unfollowed.is_symlink():
                    # BuildKit copies --parents sources from the source root with an include pattern: a
                    # symlink named is copied as the link, not followed as a plain source is.
                    copy_entry(unfollowed, base / src.name, attrs, log)
                    continue
            if src.is_dir:
                # make_dirs gives the real directory: the image may have a symlink anywhere on the way.
                top = base / src.name if parents and src.rel else dest_host
                if parents and src.rel and host_path is not None:
                    # With --parents the directory itself is copied below its parents, its mode and owner with it
                    # (BuildKit copies it as an entry of the source root); without, only its contents are.
                    copy_entry(src.path, top, attrs, log)
                dir_dest = make_dirs(root, top, owner, log, dir_mode)
                if not dir_dest.is_dir():
                    raise BuildError(f"cannot copy directory {src.name} onto file {dest}", where)
                copy_tree_contents(src.path, dir_dest, attrs, log, _filtered(tree.walk(src), excludes))
            else:
                name = src.name if (into_dir or parents) else dest_host.name
                parent = base if (into_dir or parents) else dest_host.parent
                target = make_dirs(root, parent, owner, log, dir_mode) / name
                copy_entry(src.path, target, attrs, log, os.stat(src.path))
    except OSError as e:
        raise BuildError(f"{instr.keyword} failed: {e.strerror}: {e.filename}", where) from None
    return sorted(log.written)


def _parents_sources(tree: SourceTree, patterns: Sequence[str]) -> list[Source]:
    """The sources of COPY --parents. BuildKit copies them from the source root with include patterns, so a
    symlink named is copied as the link: one that leads nowhere is no error, as it is for a plain COPY."""
    link_source = getattr(tree, "link_source", None)
    out: list[Source] = []
    for pattern in patterns:
        try:
            out.extend(tree.resolve([pattern]))
        except ContextError:
            link = None if link_source is None or has_wildcards(pattern) else link_source(_norm(pattern))
            if link is None:
                raise
            out.append(link)
    return out


def _parent_dirs(
    root: Path,
    dest_host: Path,
    rel: str,
    host_path: Callable[[str], Path],
    attrs: CopyAttrs,
    log: WriteLog,
    dir_mode: int,
) -> Path:
    """The directories of ``rel`` (COPY --parents) under the destination; the real directory of its parent.

    BuildKit copies them from the source like everything else (fsutil's createParentDirs: mode, and owner by
    the copy's rules, of the source's directory) when it creates them; existing ones are left as they are.
    A component that is not a real directory in the source (a symlink) is made as a plain new directory.
    """
    current = make_dirs(root, dest_host, attrs.owner, log, dir_mode)
    prefix = ""
    for name in [p for p in posixpath.dirname(rel).split("/") if p]:
        prefix = f"{prefix}/{name}" if prefix else name
        target = current / name
        source = host_path(prefix)
        if not os.path.lexists(target) and source.is_dir() and not source.is_symlink():
            copy_entry(source, target, attrs, log)
            current = target
        else:
            current = make_dirs(root, target, attrs.owner, log, dir_mode)
    return current


def _norm(rel: str) -> str:
    return posixpath.normpath("/" + rel).lstrip("/")


def _named(patterns: Sequence[str]) -> set[str]:
    """The sources named without a wildcard, as paths relative to the source root ("" for the root)."""
    return {_norm(p) for p in patterns if not has_wildcards(p)}


def _several_sources(instr: Copy | Add, found: Sequence[Source]) -> bool:
    """Whether a destination without a trailing "/" is refused because several sources go there.

    BuildKit has no such check. The legacy builder and kaniko have it, and count the sources actually found: a
    wildcard that matches nothing counts for nothing, so `COPY nomatch* foo /hello` writes the file foo as
    /hello. Only instructions naming several sources are refused, as before: one wildcard matching several
    files is left as it was (copied into the destination as a directory). ADD counts what it names: it sets
    its archives aside before calling run_copy, so the sources seen here are not all it found."""
    named = len(instr.sources) + len(instr.heredocs)
    if named <= 1:
        return False
    return len(found) > 1 if isinstance(instr, Copy) else True


def _excludes(instr: Copy | Add, where: SourceLocation) -> DockerIgnore | None:
    """--exclude patterns, matched like .dockerignore lines against paths relative to each source."""
    if not instr.excludes:
        return None
    try:
        return DockerIgnore.parse("\n".join(instr.excludes), "--exclude")
    except ContextError as e:
        raise BuildError(str(e), where) from None


def _filtered(paths: Iterator[str], excludes: DockerIgnore | None) -> Iterator[str]:
    if excludes is None:
        yield from paths
        return
    for rel in paths:
        if not excludes.matches(rel):
            yield rel


def heredoc_sources(instr: Copy | Add, tmpdir: Path, expand: Callable[[str], str]) -> list[Source]:
    """Heredoc bodies written to temporary files, to be copied like context files named after the heredoc.
    Bodies are expanded (quotes kept) unless the terminator was quoted, as BuildKit does."""
    out = []
    for doc in instr.heredocs:
        path = Path(tempfile.mkdtemp(dir=tmpdir)) / doc.name
        path.write_text(expand(doc.content) if doc.expand else doc.content, encoding="utf-8")
        os.chmod(path, 0o644)
        out.append(Source(doc.name, path, False))
    return out
