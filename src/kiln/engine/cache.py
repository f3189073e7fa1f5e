"""The layer cache (kaniko's --cache): keys for build steps, and which store keeps their layers.

A key is a chain: each step's key hashes the key before it with what decides the step's result (its expanded
text; for RUN the environment, user, working directory and shell; for COPY/ADD the content and metadata of every
source file). The chain starts from the base image's manifest digest (or "scratch") and the settings that shape
layer bytes (platform, compression, timestamps), so a cached layer is only ever replayed where building it again
would give the same thing.

Where entries live (a local directory, a registry repository) is transports/layercache.py's business.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.context.dockerignore import DockerIgnore
from kiln.dockerfile.instructions import Instruction
from kiln.engine.options import BuildOptions, local_cache_path
from kiln.engine.steps.copy import SourceTree
from kiln.errors import RegistryError, UsageError
from kiln.gotext import go_duration_flag
from kiln.transports.blobstore import CHUNK, BlobStore
from kiln.transports.layercache import (
    DEFAULT_TTL,
    CacheEntry,
    LayerCacheStore,
    LocalLayerCache,
    RegistryLayerCache,
)
from kiln.transports.registry import Reference, registry_options

# -- keys ------------------------------------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    """A JSON-able form of an instruction's fields: what the step does, not where it is in the file."""
    if isinstance(value, Instruction):
        fields = {
            f.name: _canon(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in ("line", "end_line", "original")
        }
        return {"keyword": value.keyword, **fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canon(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def instruction_text(instr: Instruction) -> str:
    """The expanded instruction (keyword, arguments, flags) as one canonical string."""
    return json.dumps(_canon(instr), sort_keys=True, separators=(",", ":"))


def _hash(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two part lists hash alike
        h.update(data)
    return "sha256:" + h.hexdigest()


def chain_start(base: str, opts: BuildOptions, platform: str) -> str:
    """The key a stage's chain starts from: its base (manifest digest, a parent stage's final key, or "scratch")
    and the settings that change layer bytes."""
    return _hash(
        [
            "kiln-cache-v1",
            base,
            platform,
            opts.compression,
            str(opts.compression_level),
            str(opts.timestamp),
        ]
    )


def step_key(previous: str, text: str, extra: Mapping[str, str] | None = None) -> str:
    items = sorted((extra or {}).items())
    return _hash([previous, text, *(f"{k}={v}" for k, v in items)])


def run_extra(env: Mapping[str, str], user: str, workdir: str, shell: Sequence[str]) -> dict[str, str]:
    """What a RUN's result depends on besides its text."""
    return {
        "env": json.dumps(sorted(env.items())),
        "user": user,
        "workdir": workdir,
        "shell": json.dumps(list(shell)),
    }


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _entry_line(name: str, path: Path, *, follow: bool) -> str:
    st = os.stat(path) if follow else os.lstat(path)
    line = f"{name}\0{stat.S_IFMT(st.st_mode):o}\0{stat.S_IMODE(st.st_mode):o}"
    if stat.S_ISREG(st.st_mode):
        line += f"\0{st.st_size}\0{_file_sha256(path)}"
    elif stat.S_ISLNK(st.st_mode):
        line += f"\0{os.readlink(path)}"
    return line


def sources_digest(tree: SourceTree, patterns: Sequence[str], excludes: Sequence[str] = ()) -> str:
    """The content and metadata of every file COPY/ADD would read: resolved and walked as the copy does.

    Raises what resolving raises (a missing source): the caller then runs the step, which reports it properly."""
    ignore = DockerIgnore.parse("\n".join(excludes), "--exclude") if excludes else None
    lines: list[str] = []
    for src in tree.resolve(patterns) if patterns else []:
        if ignore is not None and ignore.matches(src.rel or src.name):
            continue
        lines.append(f"source\0{src.name}\0{src.rel}\0{src.is_dir}")
        if not src.is_dir:
            lines.append(_entry_line("", src.path, follow=True))  # a named file's top-level link is followed
            continue
        lines.append(_entry_line(".", src.path, follow=True))
        for rel in tree.walk(src):
            if ignore is not None and ignore.matches(rel):
                continue
            lines.append(_entry_line(rel, src.path / rel, follow=False))
    return _hash(lines)


def cache_repository(opts: BuildOptions) -> str | None:
    """The registry repository of the layer cache: --cache-repo, else (kaniko) ``<first destination>/cache`` when
    the image is pushed; None for a local cache (``--cache-repo=oci:PATH``, or nothing to infer a repository
    from)."""
    if local_cache_path(opts.cache_repo) is not None:
        return None
    if opts.cache_repo:
        return opts.cache_repo
    if opts.destinations and not opts.no_push:
        return Reference.parse(opts.destinations[0]).name + "/cache"
    return None


class ReadOnlyCache:
    """kaniko's --no-push-cache: entries are looked up and replayed, never stored."""

    def __init__(self, store: LayerCacheStore) -> None:
        self.store = store

    def get(self, key: str, now: float | None = None) -> CacheEntry | None:
        return self.store.get(key, now)

    def fetch(self, entry: CacheEntry, into: BlobStore) -> bool:
        return self.store.fetch(entry, into)

    def put_layer(self, key: str, source: BlobStore, digest: str, diff_id: str, size: int, media_type: str) -> None:
        pass

    def put_empty(self, key: str) -> None:
        pass


def open_cache(opts: BuildOptions, warn: Callable[[str], None] | None = None) -> LayerCacheStore | None:
    """The cache a build uses, or None when --cache is off: a registry repository (--cache-repo, or inferred from
    the destination) or a local directory (--cache-repo=oci:PATH, else one under --kiln-dir)."""
    if not opts.cache:
        return None
    ttl = go_duration_flag(opts.cache_ttl, "--cache-ttl") if opts.cache_ttl else DEFAULT_TTL
    repo = cache_repository(opts)
    store: LayerCacheStore
    if repo is not None:
        try:
            store = RegistryLayerCache(
                repo, registry_options(opts.registry, pull=True), registry_options(opts.registry, pull=False), ttl,
                warn,
            )  # fmt: skip
        except RegistryError as e:
            raise UsageError(f"bad cache repository {repo!r}: {e.msg}", "--cache-repo") from None
    else:
        store = LocalLayerCache(local_cache_path(opts.cache_repo) or opts.kiln_dir / "cache", ttl)
    return ReadOnlyCache(store) if opts.no_push_cache else store


@dataclass
class StageCache:
    """One stage's walk along the key chain.

    ``lookups`` turns off at the first cacheable step that misses: the steps after it run on a root built afresh,
    so, as kaniko does, they run too (and refresh their entries). ``hit`` tells whether the last step replayed."""

    store: LayerCacheStore
    key: str
    lookups: bool = True
    hit: bool = False

    def fold(self, text: str, extra: Mapping[str, str] | None = None) -> str:
        """A step that makes no layer of its own (ENV, ARG, USER, ...) still moves the chain."""
        self.key = step_key(self.key, text, extra)
        return self.key
