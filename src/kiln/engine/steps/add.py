"""ADD: COPY plus three things: local tar archives are unpacked, http(s) URLs are fetched, and git repositories
are checked out.

Docker's rules: an archive is recognised by its content (tar, plain or gzip/bzip2/xz/zstd compressed), not its
name, and unpacked into the destination directory; a remote file is never unpacked (unless --unpack), gets mode
0600, and its Last-Modified header as mtime; --checksum is verified before anything is written.

An archive is unpacked onto the destination directory, which is its root, as Docker and BuildKit unpack it
(kiln.layers.extract, mode "archive"): a symlink in it leads back inside that directory, never out, and ".."
at that root stays there; ``.wh.*`` entries are plain files (whiteouts belong to image layers); a leading "/"
of an entry name is dropped; names whose ".." climbs out are refused. Its entry names are therefore no host
paths ("lnk/usr/x" below "lnk -> /" lands in DEST/usr/x); what the step declares, and chowns, is where each
entry really landed, found the same way.

A ``.wh.*`` file an archive brings is kept by the step as a file, but the image's layer then holds an entry
of that name, which whoever applies the layer (Docker, containerd, buildah, kiln's own flat roots) takes for a
whiteout: BuildKit's images carry the same. buildah cannot build such an archive at all (its layer store takes
the file for a whiteout and then fails to write the image).

The destination's missing directories are made 0755 (owned by --chown's user), whatever --chmod says, and
--chmod does not touch what the archive holds: BuildKit's unpack makes them with copy.MkdirAll(dest, 0755)
and applies no mode to the archive's entries. Every failure is a BuildError at the ADD's line, naming the
archive.

A git source (BuildKit's rule for what is one: kiln.context.git.is_git_url — ``https://…/REPO.git[#REF[:DIR]]``,
``git@HOST:REPO``, ``ssh://``, ``git://``) is fetched as a build context is: one commit, shallow, submodules
included, and its tree (or DIR of it) is copied into the destination as a directory, owned 0:0 unless
--chown. As in BuildKit 1.x: without ``--keep-git-dir`` there is no ``.git``; with it, ``.git`` is kept (the
branch checked out when the ref is one, ``origin`` the URL without user information); files keep the times of
the checkout and git's modes; ``--checksum=COMMIT`` (a full commit id or a prefix of at least 7 hex digits)
must name the commit the ref resolves to, else the step fails before anything is written. The layer cache
keys such a step by the resolved commit (``remote_cache_inputs``, asked of the server with ``git ls-remote``),
and the fetch then takes that very commit (``AddContext.resolved``), so a layer always matches its key.

A git source authenticates as BuildKit's git sources do, with what the build was given, not kiln's own
environment: an ssh URL (``git@HOST:…``, ``ssh://``) through the agent of ``--ssh default`` (a socket, or key
files loaded into an ssh-agent of kiln's own for the fetch: kiln.sandbox.sshproxy.KeyAgent) and refused
without it, as BuildKit refuses ("no SSH key "default" forwarded"); an http(s) URL with the build secrets
``GIT_AUTH_HEADER.<host>``, ``GIT_AUTH_TOKEN.<host>``, ``GIT_AUTH_HEADER``, ``GIT_AUTH_TOKEN`` (``--secret
id=GIT_AUTH_TOKEN,env=VAR``), the first given winning, passed to git through its environment
(kiln.context.git.GitAuth); kiln's environment variables of kiln.context.git stay a fallback.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.context.git import (
    GitAuth,
    GitSource,
    Resolved,
    fetch,
    is_git_url,
    is_ssh_url,
    parse_git_url,
    resolve,
    scrub,
    subdir_of,
)
from kiln.dockerfile.instructions import Add
from kiln.engine.steps.copy import Source, SourceTree, destination, run_copy
from kiln.engine.steps.fscopy import Owner, WriteLog, make_dirs, walk_sorted
from kiln.engine.steps.owners import resolve_chown
from kiln.errors import BuildError, ContextError, ImageFormatError, SandboxError, SourceLocation
from kiln.layers.compress import open_decompressed
from kiln.layers.extract import ExtractError, extract_layer, member_names
from kiln.layers.paths import split_image_path
from kiln.rootfs import owners
from kiln.rootfs.paths import resolve_in_root
from kiln.rootfs.resolver import RootResolver

if TYPE_CHECKING:
    from kiln.engine.options import BuildOptions, SecretSource, SshSource

_URL_SCHEMES = ("http://", "https://")
_GIT_SECRET = re.compile(r"GIT_AUTH_(?:TOKEN|HEADER)(?:\..+)?")


@dataclass(frozen=True)
class AddContext:
    """What an ADD step needs of its build: the ``--secret`` and ``--ssh`` sources its git sources authenticate
    with, a directory for an ssh-agent of kiln's own, and the commits its cache key resolved (the fetch takes
    those). One per step: the key and the execution share it."""

    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    ssh: Mapping[str, SshSource] = field(default_factory=dict)
    work_dir: Path | None = None
    resolved: dict[str, Resolved] = field(default_factory=dict)  # by source as written

    @classmethod
    def of(cls, opts: BuildOptions, work_dir: Path) -> AddContext:
        return cls(opts.secret_sources(), opts.ssh_sources(), work_dir)


def _is_url(src: str) -> bool:
    return src.startswith(_URL_SCHEMES) and not is_git_url(src)


def _is_git(src: str) -> bool:
    return is_git_url(src)


def remote_cache_inputs(instr: Add, ctx: AddContext | None = None) -> dict[str, str] | None:
    """What the layer cache keys an ADD's remote sources by, or None when one of them can only be known by
    fetching it (a plain URL without --checksum). A git source is its resolved commit (``git ls-remote``: no
    fetch; kept in ``ctx.resolved`` for the fetch) and whether .git is kept; a URL with --checksum is that
    checksum. Local sources are not included: they are keyed by content as COPY's are. Raises ContextError
    (or SandboxError) when a repository cannot be listed (the step itself then reports it at its line)."""
    ctx = ctx or AddContext()
    out: dict[str, str] = {}
    for i, src in enumerate(instr.sources):
        if _is_git(src):
            source = parse_git_url(src)
            with git_auth(ctx, source) as auth:
                resolved = resolve(source, auth=auth)
            ctx.resolved[src] = resolved
            if resolved.commit is None:
                return None  # an abbreviated id: only the fetch knows the commit
            out[f"git{i}"] = f"{source.url}#{resolved.commit}:{source.subdir or ''}"
        elif _is_url(src):
            if not instr.checksum:
                return None
            out[f"url{i}"] = f"{scrub(src)}@{instr.checksum}"
    out["keep_git_dir"] = str(bool(instr.keep_git_dir))
    return out


@contextlib.contextmanager
def git_auth(ctx: AddContext, source: GitSource) -> Iterator[GitAuth]:
    """The credentials ``source`` is fetched with, for as long as the fetch lasts (an agent kiln starts for
    ``--ssh default=KEY`` is stopped after it). ContextError: an ssh URL without ``--ssh default``."""
    secrets = _git_secrets(ctx.secrets)
    if not is_ssh_url(source.url):
        yield GitAuth(secrets)  # BuildKit mounts the agent for ssh URLs only
        return
    ssh = ctx.ssh.get("default")
    if ssh is None:
        raise ContextError(f"{source.display}: an ssh git source is fetched with the build's ssh agent: pass "
                           "--ssh default[=SOCKET|KEY]")
    if ssh.socket is not None:
        yield GitAuth(secrets, ssh.socket)
        return
    from kiln.sandbox.sshproxy import KeyAgent

    directory = Path(tempfile.mkdtemp(prefix="kiln-ssh-", dir=_short_dir(ctx.work_dir)))
    try:
        agent = KeyAgent(ssh.keys, directory, ssh.id)
        try:
            yield GitAuth(secrets, agent.socket)
        finally:
            agent.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def context_git_auth(secrets: Mapping[str, SecretSource], ssh: Mapping[str, SshSource]) -> GitAuth:
    """The credentials a git build context (the build's or a named one) is fetched with: BuildKit hands its
    context the same git secrets as ADD's, and buildx forwards ``--ssh default`` (or, without it, the client's
    own ``SSH_AUTH_SOCK``). An agent of key files (``--ssh default=KEY``) is ADD's only: a context uses the
    client's agent then."""
    default = ssh.get("default")
    if default is not None and default.socket is not None:
        agent: Path | None = default.socket
    else:
        agent = Path(os.environ["SSH_AUTH_SOCK"]) if os.environ.get("SSH_AUTH_SOCK") else None
    return GitAuth(_git_secrets(secrets), agent)


def _short_dir(work_dir: Path | None) -> Path | None:
    # git's ssh is handed the agent's path, and a unix socket's address holds 108 bytes: a long build directory
    # gives way to the system's temporary directory (the socket holds no key, and goes with the fetch).
    return work_dir if work_dir is not None and len(os.fspath(work_dir)) < 64 else None


def _git_secrets(sources: Mapping[str, SecretSource]) -> dict[str, str]:
    """The values of BuildKit's git credential secrets among the build's (no other secret is read)."""
    out: dict[str, str] = {}
    for secret_id, source in sources.items():
        if not _GIT_SECRET.fullmatch(secret_id):
            continue
        try:
            raw = source.path.read_bytes() if source.path is not None else os.environ.get(source.env or "", "").encode()
        except OSError as e:
            raise ContextError(f"secret {secret_id}: cannot be read: {e.strerror or e}") from None
        out[secret_id] = raw.decode("utf-8", "replace")
    return out


def is_archive(path: Path) -> bool:
    """Whether a file is a tar archive, possibly compressed (by content, as Docker decides). Only a regular
    file can be one (Docker's rule too): a FIFO's open would block, a device's read never end."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
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
    # The extractor's own reader: tarfile's can hang on a hostile archive (quadratic PAX parsing, huge sizes).
    with open(path, "rb") as raw:
        names = member_names(raw, label=path.name)
    return [posixpath.normpath(n.lstrip("/")) for n in names if posixpath.normpath(n) not in (".", "/")]


def run_add(
    instr: Add,
    tree: SourceTree,
    root: Path,
    workdir: str,
    where: SourceLocation,
    extra: Sequence[Source],
    scratch: Path,
    ctx: AddContext | None = None,
) -> list[str]:
    ctx = ctx or AddContext()
    gits = [s for s in instr.sources if _is_git(s)]
    if instr.keep_git_dir and not gits:
        raise BuildError("ADD --keep-git-dir applies to git sources only", where)
    urls = [s for s in instr.sources if _is_url(s)]
    local = [s for s in instr.sources if not _is_url(s) and not _is_git(s)]
    checkouts = [_checkout(g, instr, scratch, where, ctx) for g in gits]
    fetched = [_fetch(u, instr, scratch, where) for u in urls]
    written: set[str] = set()
    unpack_local = instr.unpack is not False
    plain: list[Source] = list(extra) + checkouts + fetched
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
        written.update(run_copy(as_copy, _Fixed(plain, tree, checkouts), root, workdir, where))
    if archives:
        dest, _ = destination(instr.dest, workdir)
        owner = resolve_chown(root, instr.chown) if instr.chown else None
        log = WriteLog(root)
        try:
            dest_host = make_dirs(root, resolve_in_root(root, dest), owner, log)
        except OSError as e:
            raise BuildError(f"ADD: destination {dest}: {e.strerror or e}", where) from None
        written.update(log.written)
        for arc in archives:
            written.update(_unpack(arc, root, dest_host, owner, where))
    return sorted(written)


def _unpack(arc: Source, root: Path, dest_host: Path, owner: Owner | None, where: SourceLocation) -> set[str]:
    """Unpack one archive onto ``dest_host``; the image paths it wrote."""
    try:
        with open(arc.path, "rb") as f:
            extract_layer(f, dest_host, mode="archive", label=arc.name)
        landed = _landed(dest_host, _members(arc.path))
        if owner is not None:
            for real in landed:
                owners.chown(dest_host / real, owner.uid, owner.gid)
    except (ImageFormatError, ExtractError) as e:  # UnsafePathError is an ImageFormatError
        raise BuildError(f"ADD: {e}", where) from None
    except OSError as e:
        raise BuildError(f"ADD: {arc.name}: {e.strerror or e}", where) from None
    rel_dest = os.path.relpath(dest_host, root)
    return {real if rel_dest == "." else f"{rel_dest}/{real}" for real in landed}


def _landed(dest_host: Path, members: list[str]) -> list[str]:
    """Where the entries ``members`` are now, as real paths relative to ``dest_host``: their directories are
    resolved inside it as the extraction resolved them, so no symlink is ever followed by the host kernel. An
    entry that is no longer there (a later one replaced a directory on its way) was not written: it is left out."""
    resolver = RootResolver(os.fspath(dest_host), clamp=True)  # as the extraction resolved them
    out: list[str] = []
    for member in members:
        try:
            parts = split_image_path(member)
            parent = resolver.resolve_dir(parts[:-1], create=False) if parts else None
        except ImageFormatError:  # a symlink on the way now leads out, or through a file: nothing landed there
            continue
        if parent is None:
            continue
        real = (*parent, parts[-1])
        if os.path.lexists(resolver.host(real)):
            out.append("/".join(real))
    return out


class _Fixed:
    """A SourceTree over sources that are already resolved (fetched URLs, git checkouts, plain local files).
    A checkout is walked as it is (no .dockerignore: it is no part of the context)."""

    def __init__(self, sources: list[Source], inner: SourceTree, own: Sequence[Source] = ()) -> None:
        self.sources = sources
        self.inner = inner
        self.own = list(own)
        self.keep_owners = inner.keep_owners

    def resolve(self, patterns: Sequence[str]) -> list[Source]:
        return list(self.sources)

    def walk(self, source: Source) -> Iterator[str]:
        if source in self.own:
            return walk_sorted(source.path)
        return self.inner.walk(source)


def _checkout(src: str, instr: Add, scratch: Path, where: SourceLocation, ctx: AddContext) -> Source:
    """A git source fetched into ``scratch`` (the commit the cache key resolved, when it did) and checked
    against --checksum: the directory to copy."""
    try:
        source: GitSource = parse_git_url(src)
        checksum = instr.checksum
        if checksum is not None and not re.fullmatch(r"[0-9a-f]{7,64}", checksum):
            raise BuildError(f"ADD {source.display}: --checksum of a git source is a commit id, got {checksum}",
                             where)
        target = scratch / f"git{len(os.listdir(scratch))}"
        with git_auth(ctx, source) as auth:
            checkout = fetch(source, target, keep_git_dir=instr.keep_git_dir, auth=auth,
                             resolved=ctx.resolved.get(src))
        if checksum is not None and not checkout.commit.startswith(checksum):
            raise BuildError(f"ADD {source.display}: checksum mismatch: expected commit {checksum}, got "
                             f"{checkout.commit}", where)
        path = subdir_of(checkout.path, source.subdir, source.display)
    except ContextError as e:
        raise BuildError(f"ADD {e}", where) from None
    except SandboxError as e:  # kiln's ssh-agent for --ssh default=KEY
        raise BuildError(f"ADD {source.display}: {e}", where) from None
    return Source(posixpath.basename(path), path, True)


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
    import requests  # the HTTP client costs every build a twentieth of a second: only ADD of a URL pays it

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
