"""Running one instruction of a stage.

Config-only instructions change the config and leave an empty history entry. Writing instructions (RUN, COPY,
ADD, WORKDIR) run against the stage's root; their changes become a layer. With the layer cache, a writing step is
looked up first and replayed on a hit; after the first miss in a stage, everything runs (kaniko's rule).
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.context.git import is_git_url
from kiln.dockerfile.expand import Expander
from kiln.dockerfile.instructions import Add, Arg, Copy, Instruction, Run, Workdir
from kiln.dockerfile.plan import StagePlan
from kiln.dockerfile.scope import StageScope
from kiln.engine.buildenv import BuildEnv, blob_opener, named_context, run_context, source_tree
from kiln.engine.cache import StageCache, chain_start, instruction_text, open_cache, run_extra, sources_digest, step_key
from kiln.engine.layer import BuiltLayer, write_layer_blob
from kiln.engine.rootfs import FlatRoot, StageRoot
from kiln.engine.steps.add import AddContext, remote_cache_inputs, run_add
from kiln.engine.steps.copy import ContextTree, heredoc_sources, run_copy
from kiln.engine.steps.metadata import MetaState, apply_metadata, created_by
from kiln.engine.steps.run import run_step
from kiln.engine.steps.workdir import make_workdir
from kiln.errors import BuildError, KilnError, SourceLocation
from kiln.oci import mediatypes as mt
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.snapshot.changes import Changes
from kiln.transports.image import Image
from kiln.transports.registry.sources import StoreBlobs

if TYPE_CHECKING:
    from kiln.transports.registry.ahead import PushAhead

# What a writing step does: it runs and returns the paths it wrote (None: let the snapshotter find them).
Execute = Callable[[], list[str] | None]


@dataclass
class StageState:
    """What a stage has built so far: the runtime config, the image config, its layers and its history."""

    meta: MetaState
    config: ImageConfig
    layers: list[tuple[Descriptor, str]]
    history: list[History]
    docker_format: bool


def env_tuple(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in env.items())


def make_layer(env: BuildEnv, changes: Changes, docker_format: bool, ahead: PushAhead | None = None) -> BuiltLayer:
    """The step's layer in the blob store; with `ahead` (the target's), streamed to its registry as it is made."""
    media_type = mt.layer_media_type(env.opts.compression, docker_format)
    started = time.monotonic()
    upload = ahead.stream() if ahead is not None else None
    try:
        layer = write_layer_blob(
            changes,
            env.blobs,
            compression=env.opts.compression,
            level=env.opts.compression_level,
            media_type=media_type,
            timestamp=env.timestamp,
            also=upload,
        )
    except BaseException:
        if upload is not None:
            upload.abort()
        raise
    if ahead is not None and upload is not None:
        ahead.streamed(upload, layer.descriptor, StoreBlobs(env.blobs, env.origins))
    elapsed = time.monotonic() - started
    env.reporter.phase("tar", elapsed - layer.compress_seconds, layer.uncompressed_size, diff_id=layer.diff_id)
    env.reporter.phase("compress", layer.compress_seconds, layer.descriptor.size, diff_id=layer.diff_id)
    return layer


def record(env: BuildEnv, state: StageState, layer: BuiltLayer | None, text: str) -> None:
    if layer is not None:
        state.layers.append((layer.descriptor, layer.diff_id))
    state.history.append(History(created=env.created(), created_by=text, comment="kiln", empty_layer=layer is None))


def begin_discovery(root: StageRoot) -> None:
    """Before a step whose changes must be found by walking (a flat root): record the tree."""
    if isinstance(root, FlatRoot):
        root.begin_discovery()


def stage_cache(env: BuildEnv, st: StagePlan, base: Image | None) -> StageCache | None:
    """The layer cache's key chain for a stage: from its base image's digest, or its base stage's last key."""
    if not env.opts.cache:
        return None
    if env.cache_store is None:
        env.cache_store = open_cache(env.opts, env.reporter.warning)
    store = env.cache_store
    if store is None:
        return None
    if st.base_stage is not None:
        parent = env.results[st.base_stage]
        start = parent.cache_key or parent.image.digest
    else:
        start = base.digest if base is not None else "scratch"
    p = st.platform
    return StageCache(store, chain_start(start, env.opts, f"{p.os}/{p.architecture}/{p.variant or ''}"))


def join_workdir(current: str, path: str) -> str:
    if not posixpath.isabs(path):
        path = posixpath.join(current or "/", path)
    return posixpath.normpath(path) if path != "/" else "/"


def _is_remote(source: str) -> bool:
    return "://" in source or is_git_url(source)


@dataclass
class StepRunner:
    env: BuildEnv
    scope: StageScope
    root: StageRoot
    state: StageState
    single: bool  # --single-snapshot: steps write, the stage's one snapshot is taken at its end
    cache: StageCache | None
    ahead: PushAhead | None = None  # the target stage's: its layers go to the registries as they are made

    def run(self, instr: Instruction, where: SourceLocation) -> BuiltLayer | None:
        if self.cache is not None:
            self.cache.hit = False
        if isinstance(instr, Arg):
            self._arg(instr)
            return None
        new_meta = apply_metadata(instr, self.state.meta)
        if new_meta is not None:
            self._config_only(instr, new_meta)
            return None
        if isinstance(instr, Run):
            return self._run(instr, where)
        if isinstance(instr, Copy | Add):
            return self._copy(instr, where)
        if isinstance(instr, Workdir):
            return self._workdir(instr)
        raise BuildError(f"{instr.keyword} is not supported by kiln yet", where)

    # -- config-only ---------------------------------------------------------------------------------------
    def _arg(self, instr: Arg) -> None:
        self._fold(instr)
        # ARG changes only what later instructions see, but BuildKit still commits it to history as an
        # empty layer ("ARG k=v" with the value in force, bare "ARG k" when it has none).
        if not self.single:
            pairs = " ".join(k if v is None else f"{k}={v}" for k, v in instr.pairs)
            record(self.env, self.state, None, f"ARG {pairs}")

    def _config_only(self, instr: Instruction, new_meta: MetaState) -> None:
        self._fold(instr)
        text = created_by(instr, self.state.meta.shell)
        self.state.meta = replace(new_meta, config=replace(new_meta.config, env=env_tuple(self.scope.env)))
        if not self.single:
            record(self.env, self.state, None, text)

    def _fold(self, instr: Instruction) -> None:
        if self.cache is not None:
            self.cache.fold(instruction_text(instr))

    # -- writing steps -------------------------------------------------------------------------------------
    def _run(self, instr: Run, where: SourceLocation) -> BuiltLayer | None:
        meta = self.state.meta
        history = created_by(instr, meta.shell, self.scope.run_history_args())

        def execute() -> None:
            run_step(run_context(self.env), instr, self.root, self.scope, self.state.meta, where)

        def key() -> str:
            assert self.cache is not None
            extra = run_extra(self.scope.run_env(), meta.config.user, meta.config.working_dir, meta.shell)
            return step_key(self.cache.key, instruction_text(instr), {**extra, **self._mount_inputs(instr)})

        return self._cached(instr, history, key, self.env.opts.cache_run_layers, execute, discover=True)

    def _copy(self, instr: Copy | Add, where: SourceLocation) -> BuiltLayer | None:
        meta = self.state.meta
        env = self.env
        add = AddContext.of(env.opts, env.work_dir)  # the key's resolved commits are what the step fetches

        def execute() -> list[str]:
            tree = source_tree(env, instr)
            with tempfile.TemporaryDirectory(dir=env.work_dir) as tmp:
                words = self.scope.expander()
                bodies = Expander(words.env, words.escape, skip_quotes=True)
                extra = heredoc_sources(instr, Path(tmp), bodies.word)
                if isinstance(instr, Add):
                    return run_add(instr, tree, self.root.path, meta.config.working_dir, where, extra, Path(tmp), add)
                return run_copy(instr, tree, self.root.path, meta.config.working_dir, where, extra)

        def key() -> str | None:
            assert self.cache is not None
            local = list(instr.sources)
            extra: dict[str, str] = {}
            if isinstance(instr, Add) and any(_is_remote(s) for s in instr.sources):
                remote = remote_cache_inputs(instr, add)  # git: the resolved commit; a URL: only with --checksum
                if remote is None:
                    return None  # what a URL serves is only known by fetching it
                extra.update(remote)
                local = [s for s in instr.sources if not _is_remote(s)]
            extra["sources"] = sources_digest(source_tree(env, instr), local, instr.excludes) if local else ""
            if any(doc.expand for doc in instr.heredocs):  # heredoc bodies are expanded with the stage's variables
                extra["env"] = json.dumps(sorted(self.scope.run_env().items()))
            return step_key(self.cache.key, instruction_text(instr), extra)

        history = created_by(instr, meta.shell)
        return self._cached(instr, history, key, env.opts.cache_copy_layers, execute, discover=False)

    def _workdir(self, instr: Workdir) -> BuiltLayer | None:
        meta = self.state.meta
        new_dir = join_workdir(meta.config.working_dir, instr.path)
        self.state.meta = replace(meta, config=replace(meta.config, working_dir=new_dir))

        def execute() -> list[str]:
            return make_workdir(self.root.path, new_dir, meta.config.user)

        def key() -> str:
            assert self.cache is not None
            return step_key(self.cache.key, instruction_text(instr), {"user": meta.config.user})

        # Never looked up (it is cheap), but it moves the key chain like any step.
        return self._cached(instr, created_by(instr, meta.shell), key, False, execute, discover=False)

    def _write(self, instr: Instruction, history: str, execute: Execute, *, discover: bool) -> BuiltLayer | None:
        """Run a writing step and turn what it changed into a layer."""
        env, root = self.env, self.root
        if self.single:
            execute()
            return None
        root.begin_step()
        if discover and isinstance(root, FlatRoot):  # a walking root records the tree before the step
            started = time.monotonic()
            root.begin_discovery()
            env.reporter.phase("scan", time.monotonic() - started, None)
        started = time.monotonic()
        declared = execute()
        env.reporter.phase("execute", time.monotonic() - started, None, instruction=instr.keyword)
        started = time.monotonic()
        layer = root.finish_step(declared, lambda changes: make_layer(env, changes, self.state.docker_format,
                                                                              self.ahead))
        # Finding the changes only: the layer's own tar and compress phases are reported apart.
        env.reporter.phase("snapshot", time.monotonic() - started - (layer.seconds if layer else 0.0), None)
        record(env, self.state, layer, history)
        return layer

    def _cached(
        self,
        instr: Instruction,
        history: str,
        key_fn: Callable[[], str | None],
        cacheable: bool,
        execute: Execute,
        *,
        discover: bool,
    ) -> BuiltLayer | None:
        """_write through the layer cache: replay a hit, else build and remember. ``key_fn`` gives None for a
        step whose inputs cannot be known beforehand (a URL): it always runs, and its layer moves the chain."""
        cache = self.cache
        if cache is None or self.single:
            return self._write(instr, history, execute, discover=discover)
        try:
            key = key_fn()
        except (KilnError, OSError):
            key = None  # a source that cannot be read: let the step itself report it
        if key is not None and cacheable and cache.lookups:
            started = time.monotonic()
            hit, layer = self._replay(key)
            self.env.reporter.phase("cache", time.monotonic() - started, None, hit=hit)
            if hit:
                record(self.env, self.state, layer, history)
                cache.key, cache.hit = key, True
                return layer
            cache.lookups = False
        layer = self._write(instr, history, execute, discover=discover)
        if key is None:
            key = step_key(cache.key, instruction_text(instr), {"built": layer.diff_id if layer else "empty"})
        elif cacheable:
            self._remember(key, layer)
        cache.key = key
        return layer

    # -- the layer cache -----------------------------------------------------------------------------------
    def _replay(self, key: str) -> tuple[bool, BuiltLayer | None]:
        """Look ``key`` up; on a hit, lay its layer on the root. (hit, layer): a hit may have no layer."""
        assert self.cache is not None
        env = self.env
        entry = self.cache.store.get(key)
        if entry is None or not self.cache.store.fetch(entry, env.blobs):
            return False, None
        if entry.empty:
            return True, None
        if entry.origin is not None:
            env.origins.setdefault(entry.digest, entry.origin)
        self.root.add_layer(entry.diff_id, blob_opener(env.blobs, entry.digest))
        return True, BuiltLayer(Descriptor(entry.media_type, entry.digest, entry.size), entry.diff_id, 0, 0.0, 0.0)

    def _remember(self, key: str, layer: BuiltLayer | None) -> None:
        assert self.cache is not None
        env = self.env
        try:
            if layer is None:
                self.cache.store.put_empty(key)
            else:
                d = layer.descriptor
                self.cache.store.put_layer(key, env.blobs, d.digest, layer.diff_id, d.size, d.media_type)
        except OSError as e:  # a cache that cannot be written costs speed, never the build
            env.reporter.warning(f"layer cache: cannot store {key}: {e}")

    def _mount_inputs(self, instr: Run) -> dict[str, str]:
        """What a RUN's bind mounts bring in: context files by content, stages by their key, images by digest."""
        env = self.env
        out: dict[str, str] = {}
        for i, m in enumerate(instr.mounts):
            if m.type != "bind":
                continue
            if m.from_ is None:
                out[f"mount{i}"] = sources_digest(ContextTree(env.context), [m.source or "."])
                continue
            index = env.plan.names.get(m.from_.lower())
            named = named_context(env, m.from_) if index is None else None
            if index is not None:
                parent = env.results[index]
                out[f"mount{i}"] = parent.cache_key or parent.image.digest
            elif named is not None:
                out[f"mount{i}"] = sources_digest(ContextTree(named), [m.source or "."])
            else:
                out[f"mount{i}"] = env.resolve_image(m.from_, env.platform).digest
        return out
