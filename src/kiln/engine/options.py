"""BuildOptions: every setting of a build, validated once.

The command line fills it from kaniko's executor flags (the reference set) plus the docker-style flags users type;
everything below takes the pieces it needs from here. Settings that kiln accepts but does not implement yet are
refused in ``validate`` with a message naming the flag, never ignored.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln.errors import NotSupportedYet, RegistryError, UsageError
from kiln.oci.platform import Platform
from kiln.transports.registry.reference import Reference
from kiln.transports.registry.settings import RegistrySettings

SnapshotMode = Literal["auto", "overlay", "full", "redo", "time"]
Compression = Literal["gzip", "zstd", "none"]
LogFormat = Literal["auto", "text", "color", "json"]
ManifestFormat = Literal["auto", "oci", "docker"]
NetworkMode = Literal["host", "none"]

# BuildKit's entitlements (`--allow`): what a Dockerfile may ask for only when the person building agrees.
ENTITLEMENTS = ("security.insecure", "network.host")


def default_kiln_dir() -> Path:
    """Where kiln keeps its blobs, unpacked layers and stage roots: never the host's / itself."""
    if env := os.environ.get("KILN_DIR"):
        return Path(env).absolute()
    system = Path("/var/lib/kiln")
    # By writability, not by uid: root of a user namespace (a rootless build) is uid 0 but cannot write /var/lib.
    if os.geteuid() == 0 and _writable(system):
        return system
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "kiln"


def _writable(path: Path) -> bool:
    """Whether `path` can be made or written: it, or its nearest existing ancestor, is writable."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class SecretSource:
    """Where a build secret's value comes from: a file, or an environment variable of kiln's own process."""

    id: str
    path: Path | None = None
    env: str | None = None


def parse_secret(spec: str) -> SecretSource:
    """``id=ID[,src=PATH|,env=VAR]`` (Docker's --secret). With neither, a variable named ID, else a file ID."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise UsageError(f"expected id=ID[,src=PATH|,env=VAR], got {spec!r}", "--secret")
        fields[{"source": "src", "type": "type"}.get(key, key)] = value
    unknown = set(fields) - {"id", "src", "env", "type"}
    if unknown:
        raise UsageError(f"unknown field {sorted(unknown)[0]!r} in {spec!r}", "--secret")
    secret_id = fields.get("id", "")
    if not secret_id:
        raise UsageError(f"a secret needs an id: {spec!r}", "--secret")
    if "src" in fields and "env" in fields:
        raise UsageError(f"give src or env, not both: {spec!r}", "--secret")
    if "src" in fields:
        return SecretSource(secret_id, path=Path(fields["src"]))
    if "env" in fields:
        return SecretSource(secret_id, env=fields["env"])
    if fields.get("type") == "file":
        return SecretSource(secret_id, path=Path(secret_id))
    return SecretSource(secret_id, env=secret_id) if secret_id in os.environ else SecretSource(
        secret_id, path=Path(secret_id)
    )


@dataclass(frozen=True)
class SshSource:
    """What ``RUN --mount=type=ssh,id=ID`` forwards: an agent's socket, or private key files that kiln loads into
    an ssh-agent of its own for the step. Messages name the id, never the socket's path."""

    id: str
    socket: Path | None = None
    keys: tuple[Path, ...] = ()


def parse_ssh(spec: str) -> SshSource:
    """BuildKit's ``--ssh default|ID[=SOCKET|KEY[,KEY...]]``; without a path, the agent of SSH_AUTH_SOCK."""
    ssh_id, eq, paths = spec.partition("=")
    ssh_id = ssh_id.strip()
    if not ssh_id or "," in ssh_id:
        raise UsageError(f"expected default|ID[=SOCKET|KEY[,KEY]], got {spec!r}", "--ssh")
    if not eq or not paths:
        agent = os.environ.get("SSH_AUTH_SOCK")
        if not agent:
            raise UsageError(f"{ssh_id}: no socket or key given, and SSH_AUTH_SOCK is not set", "--ssh")
        return SshSource(ssh_id, socket=Path(agent))
    items = [Path(p) for p in paths.split(",") if p]
    if len(items) == 1 and items[0].exists() and stat.S_ISSOCK(items[0].stat().st_mode):
        return SshSource(ssh_id, socket=items[0])
    return SshSource(ssh_id, keys=tuple(items))


@dataclass(frozen=True)
class BuildOptions:
    context: str = "."
    dockerfile: str = "Dockerfile"
    destinations: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)  # on the final image's manifest
    tar_path: Path | None = None
    oci_layout_path: Path | None = None
    no_push: bool = False
    digest_file: Path | None = None
    image_name_with_digest_file: Path | None = None
    image_name_tag_with_digest_file: Path | None = None
    snapshot_mode: SnapshotMode = "auto"
    single_snapshot: bool = False
    reproducible: bool = False
    source_date_epoch: int | None = None
    cache: bool = False
    cache_repo: str | None = None  # a registry repository, or oci:PATH for a local directory
    no_push_cache: bool = False  # read the layer cache, never write it
    cache_ttl: str | None = None
    cache_copy_layers: bool = False
    cache_run_layers: bool = True
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    # The platforms to build the target for: one image each, under one index when there are several.
    platforms: tuple[Platform, ...] = field(default_factory=lambda: (Platform.host(),))
    jobs: int | None = None  # platforms built at once (default: the number of cores)
    ignore_paths: tuple[str, ...] = ()
    ignore_var_run: bool = True
    compression: Compression = "gzip"
    compression_level: int | None = None
    manifest_format: ManifestFormat = "auto"
    cleanup: bool = False
    verbosity: str = "info"
    log_format: LogFormat = "auto"
    kiln_dir: Path = field(default_factory=default_kiln_dir)
    build_contexts: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    ssh: tuple[str, ...] = ()  # --ssh: agents (or keys) RUN --mount=type=ssh forwards
    in_place: bool = False
    pre_cleanup: bool = False  # in place: clear / of what an earlier build left before the first stage
    materialize: bool = False  # in place: / holds the target's files after the build (refused with cleanup)
    network: NetworkMode = "host"  # RUN's network when the instruction does not say (kaniko: the host's)
    allow: tuple[str, ...] = ()  # entitlements, as BuildKit's --allow
    dry_run: bool = False
    dry_run_format: Literal["text", "json"] = "text"

    def ssh_sources(self) -> dict[str, SshSource]:
        """The --ssh values by id (the last one of an id wins)."""
        return {s.id: s for s in (parse_ssh(spec) for spec in self.ssh)}

    def secret_sources(self) -> dict[str, SecretSource]:
        """The --secret values by id (the last one of an id wins, as in buildx)."""
        return {s.id: s for s in (parse_secret(spec) for spec in self.secrets)}

    @property
    def timestamp(self) -> int | None:
        """The mtime every layer entry and the config get, when builds must be reproducible."""
        if self.source_date_epoch is not None:
            return self.source_date_epoch
        return 0 if self.reproducible else None

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    def validate(self) -> BuildOptions:
        if not self.platforms:
            raise UsageError("no platform to build for", "--platform")
        if self.multi_platform and self.tar_path is not None:
            raise UsageError(f"a docker-archive holds one platform's image; this build makes {len(self.platforms)} "
                             f"({', '.join(map(str, self.platforms))}): use --oci-layout-path or a registry",
                             "--tar-path")
        if self.multi_platform and self.in_place:
            raise UsageError("in place there is one root, /, for one platform: build each platform in its own run, "
                             "or without --in-place", "--platform")
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}", "--jobs")
        if self.annotations and self.manifest_format == "docker":
            raise UsageError("Docker schema 2 manifests have no annotations: use --format oci", "--annotation")
        if self.materialize and self.cleanup:
            raise UsageError("--materialize leaves the target's files in /, --cleanup removes them: choose one",
                             "--materialize")
        if self.compression_level is not None:
            if self.compression == "gzip" and not 0 <= self.compression_level <= 9:
                raise UsageError("gzip levels are 0 to 9", "--compression-level")
            if self.compression == "zstd" and not 1 <= self.compression_level <= 22:
                raise UsageError("zstd levels are 1 to 22", "--compression-level")
        if self.manifest_format == "docker" and self.compression != "gzip":
            raise UsageError("Docker schema 2 images need gzip layers", "--compression")
        if self.destinations and not self.no_push:
            for dest in self.destinations:
                if not dest.strip():
                    raise UsageError("empty destination", "--destination")
        if not self.destinations and not self.no_push and not self.dry_run and not (
            self.tar_path or self.oci_layout_path
        ):
            raise UsageError(
                "nothing to do with the image: give --destination, --tar-path or --oci-layout-path (or --no-push)",
                "--destination",
            )
        if self.in_place and self.snapshot_mode == "overlay":
            raise UsageError("a build in place finds changes by walking / (no overlay mounts)", "--snapshot-mode")
        if self.cache_repo is not None:
            _check_cache_repo(self.cache_repo)
        for entitlement in self.allow:
            if entitlement not in ENTITLEMENTS:
                raise UsageError(f"unknown entitlement {entitlement!r} (known: {', '.join(ENTITLEMENTS)})", "--allow")
        # Accepted flags whose feature is still to come: refused loudly rather than silently ignored.
        unsupported: list[tuple[bool, str, str]] = []
        for secret in self.secret_sources().values():
            if secret.path is not None and not secret.path.is_file():
                raise UsageError(f"secret {secret.id}: {secret.path} is not a readable file", "--secret")
            if secret.env is not None and secret.env not in os.environ:
                raise UsageError(f"secret {secret.id}: environment variable {secret.env} is not set", "--secret")
        for name, spec in self.build_contexts.items():
            _check_named_context(name, spec)
        for ssh in self.ssh_sources().values():
            if ssh.socket is not None and not (ssh.socket.exists() and stat.S_ISSOCK(ssh.socket.stat().st_mode)):
                # The path itself stays out of the message: it is the host's agent.
                raise UsageError(f"{ssh.id}: the agent's socket does not exist or is not a socket", "--ssh")
            for key in ssh.keys:
                if not key.is_file():
                    raise UsageError(f"{ssh.id}: {key} is neither an agent's socket nor a readable key file", "--ssh")
        for is_set, flag, what in unsupported:
            if is_set:
                raise NotSupportedYet(flag, what)
        return self


def _check_named_context(name: str, spec: str) -> None:
    """A --build-context of files (BuildKit's NAME=DIR, NAME=URL, NAME=GIT-URL): a local one must be a directory
    (checked now, before anything is built); remote ones are fetched when a step reads them."""
    from kiln.context.opener import is_remote_spec, names_files

    flag = f"--build-context {name}"
    if not spec:
        raise UsageError("empty value", flag)
    if not names_files(spec) or is_remote_spec(spec):
        if spec.startswith(("s3://", "gs://")):
            raise NotSupportedYet(flag, "bucket contexts")
        return
    path = Path(spec.removeprefix("dir://"))
    if not path.is_dir():
        raise UsageError(f"{spec!r} is not a directory (nor an image address: oci-layout://, docker-archive://, "
                         "docker-image://)", flag)


def local_cache_path(repo: str | None) -> Path | None:
    """The directory of a local layer cache, kaniko's ``--cache-repo=oci:PATH``; None for a registry repository."""
    if repo is not None and repo.startswith("oci:"):
        return Path(repo.removeprefix("oci:").removeprefix("//"))
    return None


def _check_cache_repo(repo: str) -> None:
    """--cache-repo names a repository: its entries are tags that kiln chooses, so it has no tag of its own;
    or oci:PATH, a local directory."""
    local = local_cache_path(repo)
    if local is not None:
        if not repo.removeprefix("oci:").removeprefix("//"):
            raise UsageError(f"{repo!r}: no directory after oci:", "--cache-repo")
        if local.exists() and not local.is_dir():
            raise UsageError(f"{repo!r}: {local} is not a directory", "--cache-repo")
        return
    try:
        ref = Reference.parse(repo)
    except RegistryError as e:
        raise UsageError(f"{repo!r}: {e.msg}", "--cache-repo") from None
    if ref.digest or ref.tag != "latest" or repo.endswith(":latest"):
        raise UsageError(f"{repo!r} is not a repository: give it without a tag or digest", "--cache-repo")
