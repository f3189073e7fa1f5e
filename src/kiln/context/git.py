"""Git sources: build contexts (kaniko's ``git://HOST/REPO#REF#COMMIT``, BuildKit's ``https://HOST/REPO.git#REF:DIR``
and ``git@HOST:REPO.git#REF:DIR``), named build contexts and ``ADD <git url>``, fetched with the git command.

A fetch takes exactly one commit: ``git ls-remote`` resolves the ref (a branch, a tag, a full ref name, or a
commit id) to a commit first (``resolve``: what ADD's cache key is made from, handed back to ``fetch`` so that
the layer holds that very commit), then ``git init`` + ``git fetch --depth 1 URL COMMIT`` + a detached
checkout. A server that will not hand out a commit by id (protocol v0 without uploadpack.allowAnySHA1InWant)
gets the ref fetched by name instead, and what came must be the resolved commit: a branch moved in between is
an error, never another tree under the old key. An abbreviated id is found by fetching the branches and tags.
Submodules are checked out at the commits the superproject records (``--recursive``, shallow).

Credentials come from the usual places and never reach a command line, a log, a message or an image:
- git's own credential helpers and ``core.sshCommand``/``GIT_SSH_COMMAND`` work by themselves (kiln calls
  git); an SSH URL uses the agent of ``SSH_AUTH_SOCK`` — for a build context. ``ADD`` passes a ``GitAuth``
  instead, as BuildKit fetches git sources: the agent of the build's ``--ssh default`` (never kiln's own
  ``SSH_AUTH_SOCK``; an SSH URL without it is refused) and BuildKit's build secrets ``GIT_AUTH_HEADER.<host>``,
  ``GIT_AUTH_TOKEN.<host>``, ``GIT_AUTH_HEADER``, ``GIT_AUTH_TOKEN`` (the first given wins; ``<host>`` is the
  URL's host with its port, if any);
- ``GIT_AUTH_TOKEN`` (sent as HTTP basic auth with the user ``x-access-token``, as BuildKit does) or
  ``GIT_AUTH_HEADER`` (a whole ``Authorization`` value), and kaniko's ``GIT_USERNAME``/``GIT_PASSWORD``/
  ``GIT_TOKEN``, and a ``user:password@`` in the URL itself: each becomes an ``Authorization`` header that git
  reads from its environment (``--config-env=http.<origin>/.extraHeader=VAR``, so /proc/PID/cmdline names
  only the variable), scoped to the repository's own origin: a submodule on another host never sees it. The
  URL's own user information comes first, then the build secrets, then the environment.
- messages name the URL without its user information, and git's own output is scrubbed of it and of every
  credential value before it is shown.

git is run with no terminal (a new session, standard input closed), ``GIT_TERMINAL_PROMPT=0``, and hooks off.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import ContextError, UsageError
from kiln.gotext import go_bool

_HEX_FULL = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX_PART = re.compile(r"[0-9a-f]{7,64}")
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._~-]+)@(?P<host>[A-Za-z0-9.\-\[\]:]+?):(?!//)(?P<path>.+)$")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_TIMEOUT = 600.0


@dataclass(frozen=True)
class GitOptions:
    """kaniko's ``--git KEY=VALUE,...``: how a ``git://`` context is fetched."""

    branch: str | None = None  # a branch or tag name; refs/heads/NAME, else refs/tags/NAME
    single_branch: bool = False  # kiln always fetches exactly one commit: accepted, changes nothing
    recurse_submodules: bool = False
    depth: int | None = None  # commits of history; None or 0: kiln's default (1)
    insecure_skip_tls: bool = False

    @classmethod
    def parse(cls, value: str, flag: str = "--git") -> GitOptions:
        """``branch=NAME,single-branch=BOOL,recurse-submodules=BOOL,depth=N,insecure-skip-tls=BOOL``."""
        fields: dict[str, object] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            key, eq, val = part.partition("=")
            key = key.strip().lower()
            if not eq:
                raise UsageError(f"expected KEY=VALUE, got {part!r}", flag)
            if key == "branch":
                fields["branch"] = val or None
            elif key == "depth":
                try:
                    depth = int(val)
                except ValueError:
                    raise UsageError(f"depth must be a number, got {val!r}", flag) from None
                if depth < 0:
                    raise UsageError(f"depth must not be negative, got {depth}", flag)
                fields["depth"] = depth or None
            elif key in ("single-branch", "recurse-submodules", "insecure-skip-tls"):
                try:
                    fields[key.replace("-", "_")] = go_bool(val, flag)
                except UsageError:
                    raise UsageError(f"{key}: expected true or false, got {val!r}", flag) from None
            else:
                raise UsageError(
                    f"unknown option {key!r} (known: branch, single-branch, recurse-submodules, depth, "
                    "insecure-skip-tls)", flag)
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GitSource:
    """A repository, the ref to take from it and the subdirectory to use: what a git URL names.

    ``url`` is what git fetches, without user information (kept apart in ``userinfo``). ``ref`` is None for
    the remote's HEAD. ``commit`` is kaniko's third part (``#REF#COMMIT``: check out that commit after
    fetching REF)."""

    url: str
    ref: str | None = None
    commit: str | None = None
    subdir: str | None = None
    userinfo: tuple[str, str] | None = field(default=None, repr=False)
    submodules: bool = True  # BuildKit's forms check submodules out; kaniko's only with recurse-submodules
    checksum: str | None = None  # BuildKit's ?checksum=: the resolved commit must start with it

    @property
    def display(self) -> str:
        """The source as messages show it: never user information."""
        text = self.url
        if self.ref or self.subdir:
            text += "#" + (self.ref or "") + (":" + self.subdir if self.subdir else "")
        return text


@dataclass(frozen=True)
class GitAuth:
    """Credentials a build hands a fetch, as BuildKit hands them to its git sources (``ADD``): the build's
    secrets named ``GIT_AUTH_HEADER[.HOST]`` / ``GIT_AUTH_TOKEN[.HOST]`` and the agent of ``--ssh default``.
    With a GitAuth, kiln's own ``SSH_AUTH_SOCK`` is not used: ``agent`` (None: no agent at all) takes its place."""

    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # those build secrets: id -> value
    agent: Path | None = None  # the socket of the build's default ssh agent


@dataclass(frozen=True)
class Resolved:
    """What a source's ref names on the server now (``git ls-remote``): the full ref name (None when the ref is
    a commit id the server does not advertise) and its commit (None: an abbreviated id only a fetch completes)."""

    ref: str | None
    commit: str | None


@dataclass(frozen=True)
class Checkout:
    """A fetched tree: where it is, and the commit it holds."""

    path: Path
    commit: str


def scrub(text: str) -> str:
    """``text`` with the user information of every URL in it removed."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def is_ssh_url(url: str) -> bool:
    """Whether git reaches ``url`` (a GitSource's url) over SSH: ``ssh://`` or scp-like ``USER@HOST:PATH``."""
    return url.startswith("ssh://") or ("://" not in url and _SCP_LIKE.match(url) is not None)


def is_git_url(src: str) -> bool:
    """Whether an ADD source or a named build context is a git repository, as BuildKit tells: ``git://``,
    ``ssh://``, ``git@HOST:PATH``, ``git+https://`` or ``http(s)://`` whose path ends with ``.git``; and an
    scp-like ``USER@HOST:PATH.git`` for another login name."""
    if src.startswith(("git://", "ssh://", "git+ssh://", "git+https://", "git+http://", "git@")):
        return True
    scp = _SCP_LIKE.match(src)
    if scp and "://" not in src and scp.group("path").partition("#")[0].endswith((".git", ".git/")):
        return True
    if src.startswith(("http://", "https://")):
        path = urllib.parse.urlsplit(src.partition("#")[0]).path
        return path.endswith(".git") or path.endswith(".git/")
    return False


_QUERY_KEYS = {"ref", "tag", "branch", "subdir", "checksum", "commit", "submodules"}


def parse_git_url(src: str) -> GitSource:
    """A BuildKit git URL: ``URL[#REF][:SUBDIR]``, or with BuildKit 0.24's query instead of the fragment
    (``URL?tag=T|branch=B|ref=R&subdir=D&checksum=COMMIT&submodules=false``; a query with other keys is the
    URL's own). ``git://`` is git's own protocol here (BuildKit's meaning)."""
    base, _, fragment = src.partition("#")
    ref, _, subdir = fragment.partition(":")
    for prefix in ("git+https://", "git+http://", "git+ssh://"):
        if base.startswith(prefix):
            base = base.removeprefix("git+")
    checksum: str | None = None
    submodules = True
    if "?" in base and "://" in base:
        head, _, query = base.partition("?")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if pairs and all(k in _QUERY_KEYS for k, _ in pairs):
            base = head
            given = dict(pairs)
            if sum(k in given for k in ("ref", "tag", "branch")) > 1 or (fragment and given.keys() & {
                    "ref", "tag", "branch", "subdir"}):
                raise ContextError(f"{scrub(src)}: give the ref once (ref=, tag=, branch= or the #fragment)")
            if "tag" in given:
                ref = "refs/tags/" + given["tag"]
            elif "branch" in given:
                ref = "refs/heads/" + given["branch"]
            elif "ref" in given:
                ref = given["ref"]
            subdir = given.get("subdir", subdir)
            checksum = given.get("checksum") or given.get("commit") or None
            if checksum is not None and not _HEX_PART.fullmatch(checksum):
                raise ContextError(f"{scrub(src)}: checksum={checksum!r} is not a commit id")
            if "submodules" in given:
                try:
                    submodules = go_bool(given["submodules"], "submodules")
                except UsageError:
                    raise ContextError(f"{scrub(src)}: submodules= takes true or false") from None
    url, userinfo = _split_userinfo(base)
    return GitSource(url, ref or None, None, _clean_subdir(subdir, src), userinfo, submodules, checksum)


def parse_kaniko_context(spec: str, options: GitOptions | None = None, sub_path: str | None = None) -> GitSource:
    """kaniko's ``git://HOST/REPO[#REF[#COMMIT]]``: fetched over https, or http when GIT_PULL_METHOD=http."""
    rest = spec.removeprefix("git://")
    parts = rest.split("#")
    if len(parts) > 3 or not parts[0]:
        raise UsageError(f"expected git://HOST/REPO[#REF[#COMMIT]], got {scrub(spec)!r}", "--context")
    method = os.environ.get("GIT_PULL_METHOD", "")
    scheme = method if method in ("http", "https") else "https"
    url, userinfo = _split_userinfo(f"{scheme}://{parts[0]}")
    ref = parts[1] if len(parts) > 1 and parts[1] else None
    commit = parts[2] if len(parts) > 2 and parts[2] else None
    opts = options or GitOptions()
    if opts.branch:
        ref = opts.branch
    return GitSource(url, ref, commit, _clean_subdir(sub_path or "", spec), userinfo, opts.recurse_submodules)


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    if _SCP_LIKE.match(url) and "://" not in url:
        return url, None  # user@host:path: the user is SSH's login name, not a credential
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    info, _, host = parts.netloc.rpartition("@")
    user, _, password = info.partition(":")
    clean = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return clean, (urllib.parse.unquote(user), urllib.parse.unquote(password))


def _clean_subdir(subdir: str, src: str) -> str | None:
    subdir = subdir.strip("/")
    if not subdir or subdir == ".":
        return None
    if any(part == ".." for part in subdir.split("/")):
        raise ContextError(f"{scrub(src)}: the subdirectory {subdir!r} leaves the repository")
    return subdir


# -- running git ----------------------------------------------------------------------------------------------


class _Git:
    """git commands for one source: the credentials in the environment, every output scrubbed."""

    def __init__(self, source: GitSource, environ: Mapping[str, str], insecure_skip_tls: bool = False,
                 auth: GitAuth | None = None) -> None:
        self.source = source
        self.secrets: list[str] = []
        # The user's git settings stay (credential helpers, GIT_SSH_COMMAND, GIT_CONFIG_GLOBAL); what would make
        # git work on another repository than the one kiln made does not.
        self.env = {k: v for k, v in environ.items() if not k.startswith("KILN_GIT_") and k not in _REPO_VARS}
        self.env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PROTOCOL_FROM_USER": "0"})
        if auth is not None:
            self.env.pop("SSH_AUTH_SOCK", None)
            if auth.agent is not None:
                self.env["SSH_AUTH_SOCK"] = os.fspath(auth.agent)
        self.config: list[str] = ["-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false",
                                  "-c", "protocol.file.allow=never"]
        if insecure_skip_tls:
            self.config += ["-c", "http.sslVerify=false"]
        given = auth.secrets if auth is not None else {}
        header = _auth_header(source, environ, given)
        if header is not None:
            self.secrets += [header, header.partition(" ")[2]]
            self.secrets += [v for v in (source.userinfo or ()) if len(v) >= 4]
            self.secrets += [environ[k] for k in _SECRET_VARS if len(environ.get(k, "")) >= 4]
            self.secrets += [v.rstrip("\r\n") for v in given.values() if len(v.rstrip("\r\n")) >= 4]
            self.env["KILN_GIT_AUTH_HEADER"] = f"Authorization: {header}"
            self.config.append(f"--config-env=http.{_origin(source.url)}/.extraHeader=KILN_GIT_AUTH_HEADER")

    def run(self, args: Sequence[str], cwd: Path | None = None, what: str = "git") -> str:
        argv = ["git", *self.config, *args]
        try:
            proc = subprocess.run(
                argv, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                start_new_session=True, timeout=_TIMEOUT, check=False,
            )
        except FileNotFoundError:
            raise ContextError(f"{self.source.display}: the git command is not installed") from None
        except subprocess.TimeoutExpired:
            raise ContextError(f"{self.source.display}: {what} took more than {_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            raise ContextError(f"{self.source.display}: {what} failed: {self.clean(proc.stderr)}")
        return proc.stdout.decode("utf-8", "replace")

    def clean(self, raw: bytes) -> str:
        """git's error output as one line: its last fatal/error line, without user information or secrets."""
        lines = [ln.strip() for ln in scrub(raw.decode("utf-8", "replace")).splitlines() if ln.strip()]
        chosen = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines or ["no output"]
        text = chosen[-1].removeprefix("fatal: ").removeprefix("error: ")
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


_REPO_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
              "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")
_SECRET_VARS = ("GIT_AUTH_TOKEN", "GIT_AUTH_HEADER", "GIT_TOKEN", "GIT_PASSWORD")


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _auth_header(source: GitSource, environ: Mapping[str, str], secrets: Mapping[str, str]) -> str | None:
    """The Authorization value for an http(s) source: from the URL's own user information, else the build's
    secrets (BuildKit's names and order), else the environment's GIT_AUTH_HEADER / GIT_AUTH_TOKEN, else kaniko's
    GIT_TOKEN / GIT_USERNAME + GIT_PASSWORD. None: git's credential helpers decide."""
    if not source.url.startswith(("http://", "https://")):
        return None
    if source.userinfo is not None:
        return _basic(*source.userinfo)
    host = urllib.parse.urlsplit(source.url).netloc
    for name, token in ((f"GIT_AUTH_HEADER.{host}", False), (f"GIT_AUTH_TOKEN.{host}", True),
                        ("GIT_AUTH_HEADER", False), ("GIT_AUTH_TOKEN", True)):
        # A header cannot hold a line break: a secret file's final newline is no part of the value.
        value = secrets.get(name, "").rstrip("\r\n")
        if value:
            return _basic("x-access-token", value) if token else value
    if environ.get("GIT_AUTH_HEADER"):
        return environ["GIT_AUTH_HEADER"]
    if environ.get("GIT_AUTH_TOKEN"):
        return _basic("x-access-token", environ["GIT_AUTH_TOKEN"])
    if environ.get("GIT_TOKEN"):
        return _basic(environ["GIT_TOKEN"], "")
    if environ.get("GIT_USERNAME") or environ.get("GIT_PASSWORD"):
        return _basic(environ.get("GIT_USERNAME", ""), environ.get("GIT_PASSWORD", ""))
    return None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- resolving and fetching ------------------------------------------------------------------------------------


def _ls_remote(git: _Git) -> dict[str, str]:
    """ref name -> commit (annotated tags peeled)."""
    out = git.run(["ls-remote", "--", git.source.url], what="listing the repository's refs")
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        elif name:
            refs[name] = sha
    refs.update(peeled)
    return refs


def _pick(refs: Mapping[str, str], ref: str | None) -> tuple[str, str] | None:
    """(ref name, commit) for ``ref`` among the advertised refs, tried as kaniko and BuildKit do: the remote
    HEAD when there is none, else the name itself, a branch, a tag."""
    if ref is None:
        return ("HEAD", refs["HEAD"]) if "HEAD" in refs else None
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name in refs:
            return name, refs[name]
    return None


def resolve(source: GitSource, environ: Mapping[str, str] | None = None, auth: GitAuth | None = None) -> Resolved:
    """What ``source``'s ref names now, asking the server only (``git ls-remote``): what a cache key is made
    from before anything is fetched, and what ``fetch`` then takes. ContextError when the repository cannot be
    listed or the ref does not exist."""
    if source.commit is not None and _HEX_FULL.fullmatch(source.commit):
        return Resolved(None, source.commit)
    git = _Git(source, os.environ if environ is None else environ, auth=auth)
    resolved = _resolve(git)
    # kaniko's #REF#COMMIT with an abbreviated COMMIT: only the fetch knows the commit.
    return resolved if source.commit is None else Resolved(resolved.ref, None)


def resolve_commit(source: GitSource, environ: Mapping[str, str] | None = None,
                   auth: GitAuth | None = None) -> str | None:
    """The commit ``source`` names now (``resolve``'s); None when only a fetch can tell (an abbreviated id)."""
    return resolve(source, environ, auth).commit


def _resolve(git: _Git) -> Resolved:
    source = git.source
    picked = _pick(_ls_remote(git), source.ref)
    if picked is not None:
        return Resolved(*picked)
    if source.ref is not None and _HEX_FULL.fullmatch(source.ref):
        return Resolved(None, source.ref)
    if source.ref is not None and _HEX_PART.fullmatch(source.ref):
        return Resolved(None, None)
    raise ContextError(f"{source.display}: {_missing(source.ref)}")


def _missing(ref: str | None) -> str:
    return "the repository has no HEAD" if ref is None else f"no branch, tag or ref named {ref!r}"


def fetch(
    source: GitSource,
    dest: Path,
    *,
    depth: int | None = None,
    keep_git_dir: bool = False,
    insecure_skip_tls: bool = False,
    environ: Mapping[str, str] | None = None,
    auth: GitAuth | None = None,
    resolved: Resolved | None = None,
) -> Checkout:
    """Fetch ``source`` into the new directory ``dest`` (its parent must exist) and check it out; the commit.
    ``resolved`` (from ``resolve``) pins the commit to take; without it the ref is resolved now. Without
    ``keep_git_dir`` the tree holds no ``.git`` (nor its submodules'). ContextError names the source."""
    if source.url.startswith("-"):
        raise ContextError(f"{source.display}: not a repository URL")
    if source.commit is not None and not _HEX_PART.fullmatch(source.commit):
        raise ContextError(f"{source.display}: {source.commit!r} is not a commit id")
    env = os.environ if environ is None else environ
    git = _Git(source, env, insecure_skip_tls, auth)
    if resolved is None or source.commit is not None:
        resolved = _resolve(git)  # kaniko's #REF#COMMIT: REF is fetched first, whatever COMMIT is
    dest.mkdir()
    try:
        git.run(["init", "-q", "--template=", str(dest)], what="git init")
        git.run(["remote", "add", "origin", source.url], cwd=dest, what="git remote add")
        deepen = ["--depth", str(depth or 1)]
        if resolved.commit is not None:
            commit = _fetch_resolved(git, dest, resolved, deepen)
        else:
            assert source.ref is not None  # only an abbreviated id resolves to no commit
            commit = _find_commit(git, dest, source.ref)
        if source.commit is not None:
            commit = _fetch_commit(git, dest, source.commit, [])
        if source.checksum is not None and not commit.startswith(source.checksum):
            raise ContextError(f"{source.display}: checksum mismatch: expected commit {source.checksum}, got {commit}")
        git.run(["checkout", "-q", "--detach", commit], cwd=dest, what=f"checking out {commit[:12]}")
        if source.submodules and (dest / ".gitmodules").exists():
            git.run(["submodule", "update", "--init", "--recursive", "--depth", "1"], cwd=dest,
                    what="fetching the submodules")
        if keep_git_dir:
            if resolved.ref is not None and resolved.ref.startswith("refs/heads/"):
                # As BuildKit's kept .git: the branch checked out, not a detached HEAD.
                branch = resolved.ref.removeprefix("refs/heads/")
                git.run(["checkout", "-q", "-B", branch, commit], cwd=dest, what="naming the branch")
        else:
            _remove_git_dirs(dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Checkout(dest, commit)


def _fetch_resolved(git: _Git, dest: Path, resolved: Resolved, deepen: list[str]) -> str:
    """Fetch exactly the resolved commit: by id, else (a server that hands out only what it advertises) the ref
    by name, which must still be that commit."""
    commit = resolved.commit
    assert commit is not None
    if resolved.ref is None:
        return _fetch_commit(git, dest, commit, deepen)
    try:
        git.run(["fetch", "-q", "--no-tags", *deepen, "origin", commit], cwd=dest, what=f"fetching {commit[:12]}")
        return commit
    except ContextError:
        pass
    git.run(["fetch", "-q", "--no-tags", *deepen, "origin", resolved.ref], cwd=dest,
            what=f"fetching {_short_ref(resolved.ref)}")
    got = git.run(["rev-parse", "--verify", "-q", "FETCH_HEAD^{commit}"], cwd=dest, what="reading what came").strip()
    if got != commit:
        raise ContextError(f"{git.source.display}: {_short_ref(resolved.ref)} moved from {commit[:12]} to "
                           f"{got[:12]} since the build resolved it, and the server hands out only the commits its "
                           "refs name: build again")
    return got


def _short_ref(ref: str) -> str:
    for prefix, kind in (("refs/heads/", "the branch "), ("refs/tags/", "the tag ")):
        if ref.startswith(prefix):
            return kind + ref.removeprefix(prefix)
    return ref


def _fetch_commit(git: _Git, dest: Path, want: str, deepen: list[str]) -> str:
    """Fetch one commit (by id); an id the server will not hand out directly (abbreviated, or a server that
    refuses unadvertised ids) is looked for in the branches and tags. The full commit id."""
    if _HEX_FULL.fullmatch(want):
        try:
            git.run(["fetch", "-q", "--no-tags", *deepen, "origin", want], cwd=dest, what=f"fetching {want[:12]}")
            return want
        except ContextError:
            pass
    return _find_commit(git, dest, want)


def _find_commit(git: _Git, dest: Path, want: str) -> str:
    git.run(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], cwd=dest,
            what="fetching the branches and tags")
    try:
        out = git.run(["rev-parse", "--verify", "-q", f"{want}^{{commit}}"], cwd=dest, what=f"finding {want}")
    except ContextError:
        raise ContextError(f"{git.source.display}: no commit {want} in the repository") from None
    return out.strip()


def _remove_git_dirs(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
            shutil.rmtree(Path(dirpath) / ".git")
        if ".git" in filenames:  # a submodule's pointer into the superproject's .git/modules
            (Path(dirpath) / ".git").unlink()


def subdir_of(checkout: Path, subdir: str | None, display: str) -> Path:
    """The directory ``subdir`` of a checkout (symlinks resolved, which may not lead out of it)."""
    if subdir is None:
        return checkout
    path = (checkout / subdir).resolve()
    if not path.is_relative_to(checkout.resolve()):
        raise ContextError(f"{display}: the subdirectory {subdir!r} leaves the repository")
    if not path.is_dir():
        raise ContextError(f"{display}: the repository has no directory {subdir!r}")
    return path
