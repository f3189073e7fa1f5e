"""Finding the sources of COPY and ADD in a build context, with Docker's (BuildKit's) semantics.

A source is a path relative to the context root (a leading "/" means the root), cleaned like Go's path.Clean.
Wildcards (Go's filepath.Match, one path element at a time) expand to every visible match, in order; a
wildcard matching nothing gives nothing (BuildKit's rule; the classic builder and kaniko call that an error,
available with ``allow_empty_wildcard=False``), but the directory it is looked for in must exist.

What .dockerignore excludes is not there for COPY: an excluded file is "not found", an excluded directory
exists only if an exception brings back something inside it, and walking a directory skips excluded entries.

Symlinks: a symlink named as a source (or met on the way to it) is followed, and its target's content is
copied under the source's name; symlinks found while walking a directory are entries of their own. Following
a symlink out of the context (an absolute target, or ".." past the root) is an error rather than a silent
copy of something else.

Named pipes, sockets and devices are refused with an error naming them, whether named or met while walking
(see kiln.context.special); their type comes from lstat/scandir, so nothing here ever opens one. kiln's own
work directory, when it lies inside the context, is not there at all (BuildContext.hidden).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kiln.context import gomatch
from kiln.context.dockerignore import MatchState
from kiln.context.opener import BuildContext
from kiln.context.special import special_file_error, special_kind
from kiln.errors import ContextError

_MAX_SYMLINK_HOPS = 40  # Linux's own limit for one path lookup


@dataclass(frozen=True)
class ResolvedSource:
    """One source of a COPY: ``rel`` as named (or matched), ``path`` on disk after following symlinks."""

    rel: str
    path: Path
    is_dir: bool


def _not_found(pattern: str) -> ContextError:
    return ContextError(f"{pattern}: file not found in build context or excluded by .dockerignore")


def _outside(pattern: str, via: str | None = None) -> ContextError:
    how = f" (symlink {via} leads out of it)" if via else ""
    return ContextError(f"{pattern}: forbidden path outside the build context{how}")


def _clean_source(pattern: str) -> str:
    """The context-relative, cleaned form of a source; "." for the root. Climbing out with ".." is an error."""
    if not pattern.startswith("/") and gomatch.clean(pattern).split("/")[0] == "..":
        raise _outside(pattern)
    return gomatch.clean("/" + pattern).lstrip("/") or "."


@dataclass(frozen=True)
class _Followed:
    real: str  # the path with every symlink resolved, relative to the root ("." for the root)
    links: tuple[str, ...]  # the symlinks passed through, relative to the root
    mode: int  # lstat mode of ``real``


def _follow(ctx: BuildContext, rel: str, pattern: str) -> _Followed | None:
    """Resolve ``rel`` inside the context, following every symlink as BuildKit does, with the context as the root
    (an absolute target starts again at the context, and ".." stops there): nothing outside is ever read. None
    when something on the way is missing."""
    todo = [p for p in reversed(rel.split("/")) if p not in ("", ".")]
    current: list[str] = []
    links: list[str] = []
    mode = stat.S_IFDIR
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if current:  # at the context's root, ".." stays there (a named "../x" was refused before)
                current.pop()
            mode = stat.S_IFDIR
            continue
        candidate = [*current, part]
        try:
            st = os.lstat(ctx.root.joinpath(*candidate))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(st.st_mode):
            link = "/".join(candidate)
            links.append(link)
            if len(links) > _MAX_SYMLINK_HOPS:
                raise ContextError(f"{pattern}: too many levels of symbolic links")
            target = os.readlink(ctx.root.joinpath(*candidate))
            if target.startswith("/"):
                current = []
            todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            return None
        current = candidate
        mode = st.st_mode
    return _Followed("/".join(current) or ".", tuple(links), mode)


def _visible(ctx: BuildContext, followed: _Followed) -> bool:
    """Whether COPY can see a resolved source: neither it nor a symlink leading to it is excluded (a directory
    that is excluded still counts when an exception brings back something inside it)."""
    if ctx.is_hidden(followed.real) or any(ctx.is_hidden(link) for link in followed.links):
        return False
    ignore = ctx.ignore
    if not ignore:
        return True
    if any(ignore.matches(link) for link in followed.links):
        return False
    if not ignore.matches(followed.real):
        return True
    return stat.S_ISDIR(followed.mode) and next(_walk_real(ctx, followed.real), None) is not None


def _lookup(ctx: BuildContext, rel: str, pattern: str) -> ResolvedSource | None:
    followed = _follow(ctx, rel, pattern)
    if followed is None or not _visible(ctx, followed):
        return None
    kind = special_kind(followed.mode)
    if kind is not None:
        raise special_file_error(rel if rel == followed.real else f"{rel} (symlink to {followed.real})", kind)
    return ResolvedSource(rel, ctx.root / followed.real, stat.S_ISDIR(followed.mode))


def _expand(ctx: BuildContext, rel: str, pattern: str) -> list[str]:
    """The paths a wildcard source names, in Go's Glob order (sorted, element by element)."""
    parts = rel.split("/")
    first = next(i for i, part in enumerate(parts) if gomatch.has_wildcards(part))
    try:
        prefix = "/".join("".join(_literal(t) for t in gomatch.parse_glob(p)) for p in parts[:first]) or "."
        matchers = [gomatch.glob_regex(p) for p in parts[first:]]
    except gomatch.BadPattern:
        raise ContextError(f"{pattern}: syntax error in pattern") from None
    base = _follow(ctx, prefix, pattern)
    # BuildKit looks the wildcard up in its directory: that directory must be there.
    if base is None or not stat.S_ISDIR(base.mode) or not _visible(ctx, base):
        raise _not_found(pattern)
    candidates = [prefix]
    for depth, matcher in enumerate(matchers):
        found: list[str] = []
        for named in candidates:
            try:
                followed = base if depth == 0 else _follow(ctx, named, pattern)
            except ContextError:
                continue  # a symlink out of the context on the way to a match: not a directory to look into
            if followed is None or not stat.S_ISDIR(followed.mode):
                continue
            for name in sorted(os.listdir(ctx.root / followed.real)):
                if matcher.fullmatch(name):
                    found.append(name if named == "." else f"{named}/{name}")
        candidates = found
    return candidates


def _literal(token: gomatch.Token) -> str:
    assert isinstance(token, gomatch.Literal)
    return token.char


def resolve_sources(
    ctx: BuildContext, patterns: Sequence[str], *, allow_empty_wildcard: bool = True
) -> list[ResolvedSource]:
    """The sources of one COPY/ADD, in order. ContextError for a missing source, a path or symlink leading
    out of the context, or (with ``allow_empty_wildcard=False``) a wildcard that matches nothing."""
    resolved: list[ResolvedSource] = []
    for pattern in patterns:
        rel = _clean_source(pattern)
        if rel == ".":
            resolved.append(ResolvedSource(".", ctx.root, True))
            continue
        if not gomatch.has_wildcards(rel):
            source = _lookup(ctx, rel, pattern)
            if source is None:
                raise _not_found(pattern)
            resolved.append(source)
            continue
        matches = []
        for named in _expand(ctx, rel, pattern):
            source = _lookup(ctx, named, pattern)
            if source is not None:
                matches.append(source)
            elif _dangling_and_visible(ctx, named):
                # BuildKit and buildah fail on a match that leads nowhere; skipping it would build something else.
                raise _not_found(named)
        if not matches and not allow_empty_wildcard:
            raise ContextError(f"{pattern}: no source files were specified")
        resolved.extend(matches)
    return resolved


def _dangling_and_visible(ctx: BuildContext, rel: str) -> bool:
    """A symlink the context shows (not hidden, not excluded) whose target is missing."""
    path = ctx.root / rel
    if not os.path.islink(path) or ctx.is_hidden(rel) or (ctx.ignore and ctx.ignore.matches(rel)):
        return False
    try:
        return _follow(ctx, rel, rel) is None
    except ContextError:
        return False


def iter_tree(ctx: BuildContext, rel: str) -> Iterator[str]:
    """What copying the directory ``rel`` copies: every entry below it that .dockerignore leaves in, as paths
    relative to ``rel``, parents before children, names sorted. ``rel`` itself is followed if it is a symlink;
    symlinks below it are not. An excluded directory appears only when something inside it comes back."""
    source = _clean_source(rel)
    followed = _follow(ctx, source, rel)
    if followed is None:
        raise _not_found(rel)
    if not stat.S_ISDIR(followed.mode):
        return
    skip = 0 if followed.real == "." else len(followed.real) + 1
    for path in _walk_real(ctx, followed.real):
        yield path[skip:]


def _walk_real(ctx: BuildContext, real_dir: str) -> Iterator[str]:
    """Context-relative paths of the visible entries below the real directory ``real_dir``."""
    state = ctx.ignore.state_of(real_dir)[1] if real_dir != "." else None
    pending: list[str] = []
    yield from _walk_dir(ctx, real_dir, state, pending)


def _walk_dir(ctx: BuildContext, dir_rel: str, state: MatchState | None, pending: list[str]) -> Iterator[str]:
    ignore = ctx.ignore
    with os.scandir(ctx.root / dir_rel) as scan:
        entries = sorted((entry.name, entry.is_dir(follow_symlinks=False), _special(entry)) for entry in scan)
    for name, is_dir, special in entries:
        child = name if dir_rel == "." else f"{dir_rel}/{name}"
        if ctx.is_hidden(child):
            continue  # kiln's own work directory: not even an exception brings something in it back
        excluded, child_state = ignore.step(child, state)
        if excluded:
            # fsutil's walker: an excluded directory is entered only when an exception may match inside,
            # and it is sent (as a parent) only once something inside it is.
            if is_dir and ignore.may_contain_exceptions(child):
                pending.append(child)
                yield from _walk_dir(ctx, child, child_state, pending)
                if pending and pending[-1] == child:
                    pending.pop()
            continue
        if special is not None:
            raise special_file_error(child, special)
        yield from pending
        pending.clear()
        yield child
        if is_dir:
            yield from _walk_dir(ctx, child, child_state, pending)


def _special(entry: os.DirEntry[str]) -> str | None:
    """What kind of special file an entry is, if it is one; the directory's own type field answers without a
    stat for everything else."""
    if entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False) or entry.is_symlink():
        return None
    return special_kind(entry.stat(follow_symlinks=False).st_mode)
