"""Opening a build context: a directory, a local tarball, or a tar stream on standard input.

The spellings are kaniko's ``--context`` values: ``PATH`` or ``dir://PATH`` for a directory; ``PATH`` (a file)
or ``tar://PATH`` for a tarball, plain or compressed with gzip, zstd, xz or bzip2; ``-`` or ``tar://stdin`` for
a tarball on standard input. A tarball is unpacked into a fresh directory under the work directory, removed
again by ``close()``.

Remote contexts are fetched into the work directory the same way: kaniko's ``git://HOST/REPO[#REF[#COMMIT]]``
(over https, or http with ``GIT_PULL_METHOD=http``; shaped by ``--git`` and ``--context-sub-path``), BuildKit's
git URLs (``https://HOST/REPO.git#REF:SUBDIR``, ``git@HOST:REPO.git#REF:SUBDIR``, ``ssh://``), see
kiln.context.git; and a tarball served over http(s) (``https://HOST/ctx.tar.gz``). The ``.dockerignore`` is
the one of the directory that becomes the context (a git URL's subdirectory). Cloud buckets (``s3://``,
``gs://``, kaniko's ``--bucket``) are refused.

kiln's own work directory (``--kiln-dir``) may lie inside a directory context; it is then hidden from COPY and
ADD as if .dockerignore'd, without a way back: it holds the stage roots being built, so copying it copies a
build into itself.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from kiln.context.dockerignore import DockerIgnore
from kiln.context.git import (
    GitAuth,
    GitOptions,
    fetch,
    is_git_url,
    parse_git_url,
    parse_kaniko_context,
    scrub,
    subdir_of,
)
from kiln.context.special import special_kind
from kiln.context.tarball import extract_tarball, is_archive
from kiln.errors import ContextError, NotSupportedYet, UsageError

DOCKERIGNORE = ".dockerignore"
_STDIN_SPECS = ("-", "tar://stdin")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*)://")
_BUCKETS = ("s3", "gs", "azblob", "https+azure")


class ContextSpec(str):
    """A ``--context`` value (the user's text) with the flags that shape a remote context: kaniko's ``--git``
    options and ``--context-sub-path``. open_context reads them from here unless given explicitly, so that
    whatever passes the context along as a string passes them too."""

    git: GitOptions | None
    sub_path: str | None

    def __new__(cls, value: str, git: GitOptions | None = None, sub_path: str | None = None) -> ContextSpec:
        self = super().__new__(cls, value)
        self.git = git
        self.sub_path = sub_path
        return self


def is_remote_spec(spec: str) -> bool:
    """Whether a context value names something to fetch (a URL, a git repository) rather than a local path."""
    return bool(_SCHEME.match(spec)) and not spec.startswith(("dir://", "tar://")) or is_git_url(spec)


@dataclass
class BuildContext:
    """A build context on disk: its root directory and the .dockerignore rules COPY and ADD honour.

    ``name`` is the context as the user gave it, for messages. ``owned_dir`` is set when kiln unpacked the
    context itself and must remove it. ``hidden`` holds the real paths (relative to ``root``) of directories
    that are no part of the context whatever .dockerignore says: kiln's own work directories.
    """

    root: Path
    ignore: DockerIgnore
    name: str
    owned_dir: Path | None = field(default=None, repr=False)
    hidden: tuple[str, ...] = ()
    # A context that was a Dockerfile's text (stdin or a URL serving plain text, as BuildKit reads one): the
    # build's Dockerfile, kept outside the context, which is empty.
    dockerfile: Path | None = None

    def is_hidden(self, real_rel: str) -> bool:
        """Whether the real path ``real_rel`` (relative to the root, "/"-separated) is in a hidden directory."""
        return any(real_rel == h or real_rel.startswith(h + "/") for h in self.hidden)

    def dockerignore_for(self, dockerfile: Path | None) -> DockerIgnore:
        """The ignore rules for a build with this Dockerfile: ``<Dockerfile>.dockerignore`` beside it when it
        exists (as BuildKit does), otherwise the context's own ``.dockerignore``, otherwise nothing."""
        if dockerfile is not None:
            specific = dockerfile.with_name(dockerfile.name + DOCKERIGNORE)
            found = _read_ignore_file(specific)
            if found is not None:
                return found
        return _read_ignore_file(self.root / DOCKERIGNORE) or DockerIgnore()

    def close(self) -> None:
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_ignore_file(path: Path) -> DockerIgnore | None:
    try:
        data = _read_regular(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ContextError(f"{path}: cannot read: {err.strerror}") from err
    # Go reads the file as bytes; undecodable bytes can only ever match themselves, so replacing is harmless.
    return DockerIgnore.parse(data.decode("utf-8", errors="surrogateescape"), str(path))


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path`` (symlinks followed), which must be a regular file: a FIFO would block the open
    and a device never end, so the type is checked first, and again on the open file in case it was swapped."""
    kind = special_kind(os.stat(path).st_mode)
    if kind is not None:
        raise ContextError(f"{path}: is {kind}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ContextError(f"{path}: is not a regular file")
        return f.read()


def open_context(
    spec: str,
    work_dir: Path,
    stdin: BinaryIO | None = None,
    dockerfile: Path | None = None,
    kiln_dir: Path | None = None,
    *,
    git: GitOptions | None = None,
    sub_path: str | None = None,
    git_auth: GitAuth | None = None,
) -> BuildContext:
    """The build context named by ``spec`` (see the module doc). With ``dockerfile``, its own
    ``<Dockerfile>.dockerignore`` takes precedence over the context's. ``kiln_dir`` and ``work_dir`` are
    hidden from a directory context that holds them. ``git`` and ``sub_path`` (kaniko's --git and
    --context-sub-path) shape a remote context; by default a ContextSpec's own. ContextError names the
    context."""
    if isinstance(spec, ContextSpec):
        git = git if git is not None else spec.git
        sub_path = sub_path if sub_path is not None else spec.sub_path
    if is_remote_spec(spec) and not Path(spec).exists():
        return open_remote(str(spec), work_dir, dockerfile, git=git, sub_path=sub_path, auth=git_auth)
    if spec in _STDIN_SPECS:
        if stdin is None:
            raise ContextError(f"{spec}: the build context is standard input, but none was given")
        return _from_stream(spec, stdin, work_dir, dockerfile)
    if spec.startswith("tar://"):
        return _from_tarball(spec, Path(spec.removeprefix("tar://")), work_dir, dockerfile)
    if spec.startswith("dir://"):
        path = Path(spec.removeprefix("dir://"))
        if not path.is_dir():
            raise ContextError(f"{spec}: the build context is not a directory")
        return _from_dir(spec, path, dockerfile, kiln_dir, work_dir)
    path = Path(spec)
    if path.is_dir():
        return _from_dir(spec, path, dockerfile, kiln_dir, work_dir)
    if path.is_file():
        return _from_tarball(spec, path, work_dir, dockerfile)
    if path.exists():
        kind = special_kind(path.stat().st_mode)
        raise ContextError(f"{spec}: the build context is {kind}, not a directory or a file")
    raise ContextError(f"{spec}: the build context does not exist")


def _from_dir(name: str, path: Path, dockerfile: Path | None, kiln_dir: Path | None, work_dir: Path) -> BuildContext:
    root = path.resolve()
    ctx = BuildContext(root=root, ignore=DockerIgnore(), name=name, hidden=_hidden_dirs(root, kiln_dir, work_dir))
    ctx.ignore = ctx.dockerignore_for(dockerfile)
    return ctx


def _hidden_dirs(root: Path, kiln_dir: Path | None, work_dir: Path) -> tuple[str, ...]:
    """Where kiln's work directories lie inside the context ``root``, as real paths relative to it (the build's
    own work directory too: with a context inside the kiln dir, that is where the stage roots are)."""
    if kiln_dir is not None and kiln_dir.resolve() == root:
        # Hiding it would hide the whole context.
        raise UsageError(f"{kiln_dir} is the build context itself; put kiln's work directory elsewhere", "--kiln-dir")
    reals = [work.resolve() for work in (kiln_dir, work_dir) if work is not None]
    return tuple(real.relative_to(root).as_posix() for real in reals if real != root and real.is_relative_to(root))


def _from_tarball(name: str, archive: Path, work_dir: Path, dockerfile: Path | None) -> BuildContext:
    if not archive.is_file():
        raise ContextError(f"{name}: the build context archive does not exist")
    return _unpacked(name, archive, work_dir, dockerfile)


def _from_stream(name: str, stream: BinaryIO, work_dir: Path, dockerfile: Path | None) -> BuildContext:
    # Spooled to a file first: the compression is told from the first bytes, and a pipe cannot seek back.
    work_dir.mkdir(parents=True, exist_ok=True)
    fd, spool_name = tempfile.mkstemp(prefix="context-stdin-", suffix=".tar", dir=work_dir)
    spool = Path(spool_name)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return _unpacked(name, spool, work_dir, dockerfile, text_is_dockerfile=True)
    finally:
        spool.unlink(missing_ok=True)


def _unpacked(name: str, archive: Path, work_dir: Path, dockerfile: Path | None, *,
              text_is_dockerfile: bool = False) -> BuildContext:  # fmt: skip
    work_dir.mkdir(parents=True, exist_ok=True)
    if text_is_dockerfile and not is_archive(archive):
        return _dockerfile_only(name, archive, work_dir)
    root = Path(tempfile.mkdtemp(prefix="context-", dir=work_dir))
    try:
        extract_tarball(archive, root, name)
        ctx = BuildContext(root=root.resolve(), ignore=DockerIgnore(), name=name, owned_dir=root)
        ctx.ignore = ctx.dockerignore_for(dockerfile)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return ctx


def _dockerfile_only(name: str, text: Path, work_dir: Path) -> BuildContext:
    """A context that is a Dockerfile's text: an empty context, and the text as the build's Dockerfile beside it."""
    owned = Path(tempfile.mkdtemp(prefix="context-", dir=work_dir))
    (owned / "context").mkdir()
    dockerfile = owned / "Dockerfile"
    shutil.copyfile(text, dockerfile)
    return BuildContext(root=(owned / "context").resolve(), ignore=DockerIgnore(), name=name, owned_dir=owned,
                        dockerfile=dockerfile)


def open_remote(
    spec: str,
    work_dir: Path,
    dockerfile: Path | None = None,
    *,
    git: GitOptions | None = None,
    sub_path: str | None = None,
    flag: str = "--context",
    kaniko_git: bool = True,
    auth: GitAuth | None = None,
) -> BuildContext:
    """A context fetched into ``work_dir``: a git repository or a tarball over http(s) (see the module doc).
    ``kaniko_git``: ``git://`` is kaniko's (over https) rather than git's own protocol (BuildKit's, named
    contexts)."""
    scheme = _SCHEME.match(spec)
    name = scrub(spec)
    if scheme and scheme.group(1) in _BUCKETS:
        raise NotSupportedYet(flag, f"{scheme.group(1)}:// bucket contexts ({name}); download the archive and "
                              "give it as a tarball context (tar://PATH)")
    work_dir.mkdir(parents=True, exist_ok=True)
    if spec.startswith("git://") and kaniko_git:
        source = parse_kaniko_context(spec, git, sub_path)
    elif is_git_url(spec):
        source = parse_git_url(spec)
        if sub_path:
            source = replace(source, subdir="/".join(p for p in (source.subdir, sub_path.strip("/")) if p))
    elif spec.startswith(("http://", "https://")):
        if sub_path:
            raise NotSupportedYet("--context-sub-path", f"with a tarball context ({name})")
        return _from_url(spec, name, work_dir, dockerfile)
    else:
        what = f"{scheme.group(1)}://" if scheme else "this kind of"
        raise NotSupportedYet(flag, f"{what} build contexts ({name})")
    opts = git or GitOptions()
    checkout_dir = Path(tempfile.mkdtemp(prefix="context-git-", dir=work_dir))
    try:
        checkout = fetch(source, checkout_dir / "tree", depth=opts.depth, insecure_skip_tls=opts.insecure_skip_tls,
                         auth=auth)
        root = subdir_of(checkout.path, source.subdir, source.display)
        ctx = BuildContext(root=root, ignore=DockerIgnore(), name=source.display, owned_dir=checkout_dir)
        ctx.ignore = ctx.dockerignore_for(dockerfile)
    except BaseException:
        shutil.rmtree(checkout_dir, ignore_errors=True)
        raise
    return ctx


def _from_url(url: str, name: str, work_dir: Path, dockerfile: Path | None) -> BuildContext:
    """A tarball served over http(s), downloaded (user information in the URL is used, never shown) and
    unpacked as a local one."""
    import requests

    fd, spool_name = tempfile.mkstemp(prefix="context-url-", suffix=".tar", dir=work_dir)
    spool = Path(spool_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=60) as resp:
                    if resp.status_code >= 400:
                        raise ContextError(f"{name}: HTTP {resp.status_code} {resp.reason}")
                    for chunk in resp.iter_content(1 << 20):
                        out.write(chunk)
            except requests.RequestException as e:
                raise ContextError(f"{name}: cannot download the build context: {scrub(str(e))}") from None
        return _unpacked(name, spool, work_dir, dockerfile, text_is_dockerfile=True)
    finally:
        spool.unlink(missing_ok=True)


# What --build-context NAME=VALUE names when it is an image (kiln.transports.address's spellings).
IMAGE_PREFIXES = ("oci-layout:", "docker-archive:", "docker-image://", "docker://", "oci:")


def names_files(spec: str) -> bool:
    """Whether a --build-context value names files (a directory, a git repository, a tarball URL) rather than
    an image (oci-layout://, docker-archive://, docker-image://)."""
    return not spec.startswith(IMAGE_PREFIXES)


def open_named_context(name: str, spec: str, work_dir: Path, auth: GitAuth | None = None) -> BuildContext:
    """A named build context that names files (BuildKit's ``--build-context NAME=/dir``, ``NAME=https://…/ctx.tar
    .gz``, ``NAME=https://…/REPO.git#REF:DIR``, ``NAME=git@HOST:REPO.git``), for ``COPY --from=NAME`` and
    ``RUN --mount=from=NAME``: a directory is used where it is (its own .dockerignore applies), the others are
    fetched into ``work_dir`` and removed by ``close()``. ``git://`` is git's own protocol here, as in BuildKit.
    Errors name the flag and the context."""
    flag = f"--build-context {name}"
    if not names_files(spec):
        raise UsageError(f"{spec!r} names an image, not files", flag)
    if is_remote_spec(spec) and not Path(spec).exists():
        try:
            return open_remote(spec, work_dir / f"named-{len(os.listdir(work_dir)) if work_dir.is_dir() else 0}",
                               flag=flag, kaniko_git=False, auth=auth)
        except ContextError as e:
            raise ContextError(f"{flag}: {e}") from None
    path = Path(spec.removeprefix("dir://"))
    if not path.is_dir():
        raise UsageError(f"{spec!r} is not a directory (a named context of files is a directory, a git URL or an "
                         "http(s) URL of a tarball)", flag)
    ctx = BuildContext(root=path.resolve(), ignore=DockerIgnore(), name=spec)
    ctx.ignore = ctx.dockerignore_for(None)
    return ctx
