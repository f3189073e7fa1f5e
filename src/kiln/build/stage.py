"""Building one stage: its root, its config, its layers and history, instruction by instruction."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from kiln.build.cache import (
    LayerCacheStore,
    StageCache,
    chain_start,
    instruction_text,
    open_cache,
    run_extra,
    sources_digest,
    step_key,
)
from kiln.build.layer import BuiltLayer, write_layer_blob
from kiln.build.rootfs import FlatRoot, OverlayRoot, StageRoot
from kiln.build.steps.add import run_add
from kiln.build.steps.copy import ContextTree, RootfsTree, SourceTree, heredoc_sources, run_copy
from kiln.build.steps.metadata import MetaState, apply_metadata, created_by
from kiln.build.steps.run import run_step
from kiln.build.steps.workdir import make_workdir
from kiln.context.source import BuildContext
from kiln.dockerfile.expand import Expander
from kiln.dockerfile.instructions import Add, Arg, Copy, Instruction, Onbuild, Run, Workdir
from kiln.dockerfile.parse import parse_instruction_text
from kiln.dockerfile.plan import BuildPlan, StagePlan, onbuild_instructions, with_onbuild
from kiln.dockerfile.scope import StageScope
from kiln.errors import (
    BuildError,
    ContextError,
    KilnError,
    SandboxError,
    SnapshotError,
    SourceLocation,
    UnsafePathError,
)
from kiln.oci import mediatypes as mt
from kiln.oci.config import History, ImageConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.manifest import Manifest
from kiln.options import BuildOptions
from kiln.progress import Reporter
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.walk import SnapshotMode
from kiln.store.layerstore import LayerStore
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.registry.sources import BlobOrigin, StoreBlobs


@dataclass
class StageResult:
    """A finished stage: its image (blobs in kiln's store), its scope for stages built FROM it, and its root."""

    image: Image
    scope: StageScope
    root: StageRoot
    docker_format: bool
    cache_key: str | None = None  # the stage's last layer-cache key: where stages built FROM it start theirs


@dataclass
class BuildEnv:
    """What every stage of one build shares."""

    opts: BuildOptions
    plan: BuildPlan
    reporter: Reporter
    blobs: BlobStore
    layers: LayerStore
    context: BuildContext
    work_dir: Path
    resolve_image: Callable[[str], Image]
    origins: dict[str, BlobOrigin] = field(default_factory=dict)
    results: dict[int, StageResult] = field(default_factory=dict)
    extra_roots: list[StageRoot] = field(default_factory=list)
    use_overlay: bool = True
    timestamp: int | None = None
    cache_store: LayerCacheStore | None = None  # opened by the first stage that uses it, shared by the rest

    def created(self) -> str:
        t = self.timestamp if self.timestamp is not None else time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class _State:
    meta: MetaState
    config: ImageConfig
    layers: list[tuple[Descriptor, str]]
    history: list[History]
    docker_format: bool


def _blob_opener(blobs: BlobStore, digest: str) -> Callable[[], object]:
    return lambda: blobs.open(digest)


def _new_root(env: BuildEnv, name: str, *, stage: bool = False) -> StageRoot:
    if env.opts.in_place and stage:
        from kiln.build.inplace import make_in_place_root

        stages = sum(len(wave) for wave in env.plan.waves)
        return make_in_place_root(env.opts, stages, env.context.root)
    stage_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=env.work_dir))
    ignore = IgnoreRules.for_root(
        stage_dir,
        ignore_paths=env.opts.ignore_paths,
        work_dir=env.opts.kiln_dir,
        ignore_var_run=env.opts.ignore_var_run,
        mountinfo=None,
    )
    if env.use_overlay and not env.opts.in_place:  # in place: no mounts (an image read by COPY --from is flat)
        return OverlayRoot(stage_dir, env.layers, ignore)
    mode = SnapshotMode(env.opts.snapshot_mode if env.opts.snapshot_mode in ("full", "redo", "time") else "full")
    return FlatRoot(stage_dir, ignore, mode)


def _base(env: BuildEnv, st: StagePlan) -> tuple[Image | None, StageScope]:
    plan = env.plan
    if st.base_stage is not None:
        parent = env.results[st.base_stage]
        return parent.image, plan.scope(st, parent=parent.scope)
    if st.base_image is None or st.base_image.lower() == "scratch":
        return None, plan.scope(st, base_env={})
    started = time.monotonic()
    image = env.resolve_image(st.base_image)
    env.reporter.phase("base", time.monotonic() - started, None, image=st.base_image)
    return image, plan.scope(st, base_env=image.config.config.env_dict())


def build_stage(env: BuildEnv, st: StagePlan) -> StageResult:
    opts = env.opts
    path = env.plan.path
    base, scope = _base(env, st)
    root = _new_root(env, f"stage{st.index}", stage=True)
    try:
        if base is not None:
            started = time.monotonic()
            for desc, diff_id in base.layer_diff_ids():
                root.add_layer(diff_id, _blob_opener(env.blobs, desc.digest))  # type: ignore[arg-type]
            env.reporter.phase("unpack", time.monotonic() - started, None, layers=len(base.layers))
            base_cfg = base.config
            docker_format = mt.is_docker_family(base.manifest.media_type)
            # A base stage's triggers are already in the plan; an image's are only known now.
            triggers = list(base.config.config.on_build) if st.base_stage is None else []
        else:
            base_cfg = ImageConfig(
                architecture=st.platform.architecture, os=st.platform.os, variant=st.platform.variant
            )
            docker_format = False
            triggers = []
        if opts.manifest_format != "auto":
            docker_format = opts.manifest_format == "docker"
        # ONBUILD triggers run first and are not inherited further (BuildKit clears them after running them).
        if triggers:
            trig = onbuild_instructions(triggers, st.base_image or st.label, st.from_, parse_instruction_text, path)
            st = with_onbuild(env.plan, st, trig)
        cfg = replace(base_cfg, config=replace(base_cfg.config, on_build=()), history=tuple(base_cfg.history))
        state = _State(
            MetaState(cfg.config, cfg.author),
            cfg,
            list(base.layer_diff_ids()) if base else [],
            list(cfg.history),
            docker_format,
        )
        total = len(st.instructions)
        single = opts.single_snapshot
        cache = _stage_cache(env, st, base) if not single else None
        if single:
            root.begin_step()
            _begin_discovery(root)
        for number, raw in enumerate(st.instructions, start=1):
            where = SourceLocation(path, raw.line)
            instr = scope.apply(raw)
            env.reporter.step_started(st.label, number, total, _step_text(instr), str(where))
            try:
                layer = _dispatch(env, st, instr, scope, root, state, where, single, cache)
            except (ContextError, SandboxError, SnapshotError, UnsafePathError) as e:
                # Errors raised below the engine do not know the Dockerfile line; the user needs it.
                raise BuildError(f"{instr.keyword}: {e}", where) from e
            except OSError as e:
                raise BuildError(f"{instr.keyword} failed: {e}", where) from e
            cached = cache is not None and cache.hit
            env.reporter.step_finished(layer.descriptor.size if layer else None, "cached" if cached else "")
        if single:
            layer = root.finish_step(None, lambda ch: _make_layer(env, ch, state.docker_format))
            _record(env, state, layer, "single snapshot of the stage")
        image = _image(env, state, scope)
        return StageResult(image, scope, root, state.docker_format, cache.key if cache else None)
    except BaseException:
        root.close()
        raise


def _stage_cache(env: BuildEnv, st: StagePlan, base: Image | None) -> StageCache | None:
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


def _replay(env: BuildEnv, cache: StageCache, key: str, root: StageRoot) -> tuple[bool, BuiltLayer | None]:
    """Look ``key`` up; on a hit, lay its layer on the root. (hit, layer): a hit may have no layer."""
    entry = cache.store.get(key)
    if entry is None or not cache.store.fetch(entry, env.blobs):
        return False, None
    if entry.empty:
        return True, None
    digest = entry.digest
    if entry.origin is not None:
        env.origins.setdefault(digest, entry.origin)
    root.add_layer(entry.diff_id, _blob_opener(env.blobs, digest))  # type: ignore[arg-type]
    return True, BuiltLayer(Descriptor(entry.media_type, digest, entry.size), entry.diff_id, 0, 0.0, 0.0)


def _remember(env: BuildEnv, cache: StageCache, key: str, layer: BuiltLayer | None) -> None:
    try:
        if layer is None:
            cache.store.put_empty(key)
        else:
            d = layer.descriptor
            cache.store.put_layer(key, env.blobs, d.digest, layer.diff_id, d.size, d.media_type)
    except OSError as e:  # a cache that cannot be written costs speed, never the build
        env.reporter.warning(f"layer cache: cannot store {key}: {e}")


def _mount_sources_key(env: BuildEnv, instr: Run) -> dict[str, str]:
    """What a RUN's bind mounts bring in: context files by content, stages by their key, images by digest."""
    out: dict[str, str] = {}
    for i, m in enumerate(instr.mounts):
        if m.type != "bind":
            continue
        if m.from_ is None:
            out[f"mount{i}"] = sources_digest(ContextTree(env.context), [m.source or "."])
            continue
        index = env.plan.names.get(m.from_.lower())
        if index is not None:
            parent = env.results[index]
            out[f"mount{i}"] = parent.cache_key or parent.image.digest
        else:
            out[f"mount{i}"] = env.resolve_image(m.from_).digest
    return out


def _is_remote(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def _begin_discovery(root: StageRoot) -> None:
    if isinstance(root, FlatRoot):
        root.begin_discovery()


def _step_text(instr: Instruction) -> str:
    text = " ".join(instr.original.split())
    return text if len(text) <= 100 else text[:97] + "..."


def _make_layer(env: BuildEnv, changes: object, docker_format: bool) -> BuiltLayer:
    media_type = mt.layer_media_type(env.opts.compression, docker_format)
    started = time.monotonic()
    layer = write_layer_blob(
        changes,  # type: ignore[arg-type]
        env.blobs,
        compression=env.opts.compression,
        level=env.opts.compression_level,
        media_type=media_type,
        timestamp=env.timestamp,
    )
    elapsed = time.monotonic() - started
    env.reporter.phase("tar", elapsed - layer.compress_seconds, layer.uncompressed_size, diff_id=layer.diff_id)
    env.reporter.phase("compress", layer.compress_seconds, layer.descriptor.size, diff_id=layer.diff_id)
    return layer


def _record(env: BuildEnv, state: _State, layer: BuiltLayer | None, text: str) -> None:
    if layer is not None:
        state.layers.append((layer.descriptor, layer.diff_id))
    state.history.append(History(created=env.created(), created_by=text, comment="kiln", empty_layer=layer is None))


def _dispatch(
    env: BuildEnv,
    st: StagePlan,
    instr: Instruction,
    scope: StageScope,
    root: StageRoot,
    state: _State,
    where: SourceLocation,
    single: bool,
    cache: StageCache | None = None,
) -> BuiltLayer | None:
    meta = state.meta
    text = created_by(instr, meta.shell)
    if cache is not None:
        cache.hit = False
    if isinstance(instr, Arg):
        if cache is not None:
            cache.fold(instruction_text(instr))
        # ARG changes only what later instructions see, but BuildKit still commits it to history as an
        # empty layer ("ARG k=v" with the value in force, bare "ARG k" when it has none).
        if not single:
            pairs = " ".join(k if v is None else f"{k}={v}" for k, v in instr.pairs)
            _record(env, state, None, f"ARG {pairs}")
        return None
    new_meta = apply_metadata(instr, meta)
    if new_meta is not None:
        if cache is not None:
            cache.fold(instruction_text(instr))
        state.meta = replace(new_meta, config=replace(new_meta.config, env=_env_tuple(scope.env)))
        if not single:
            _record(env, state, None, text)
        return None

    def write_step(declared_fn: Callable[[], list[str] | None], discover: bool) -> BuiltLayer | None:
        if single:
            declared_fn()
            return None
        root.begin_step()
        if discover:
            _begin_discovery(root)
        started = time.monotonic()
        declared = declared_fn()
        env.reporter.phase("execute", time.monotonic() - started, None, instruction=instr.keyword)
        started = time.monotonic()
        layer = root.finish_step(declared, lambda ch: _make_layer(env, ch, state.docker_format))
        # Finding the changes only: the layer's own tar and compress phases are reported apart.
        spent = time.monotonic() - started - (layer.seconds if layer else 0.0)
        env.reporter.phase("snapshot", spent, None)
        _record(env, state, layer, text_for_history)
        return layer

    def cached_step(
        key_fn: Callable[[], str | None],
        cacheable: bool,
        declared_fn: Callable[[], list[str] | None],
        discover: bool,
    ) -> BuiltLayer | None:
        """write_step through the layer cache: replay a hit, else build and remember. ``key_fn`` gives None for a
        step whose inputs cannot be known beforehand (a URL): it always runs, and its layer moves the chain."""
        if cache is None or single:
            return write_step(declared_fn, discover)
        try:
            key = key_fn()
        except (KilnError, OSError):
            key = None  # a source that cannot be read: let the step itself report it
        if key is not None and cacheable and cache.lookups:
            started = time.monotonic()
            hit, layer = _replay(env, cache, key, root)
            env.reporter.phase("cache", time.monotonic() - started, None, hit=hit)
            if hit:
                _record(env, state, layer, text_for_history)
                cache.key, cache.hit = key, True
                return layer
            cache.lookups = False
        layer = write_step(declared_fn, discover)
        if key is None:
            key = step_key(cache.key, instruction_text(instr), {"built": layer.diff_id if layer else "empty"})
        elif cacheable:
            _remember(env, cache, key, layer)
        cache.key = key
        return layer

    text_for_history = text
    opts = env.opts
    if isinstance(instr, Run):
        run_args = scope.run_history_args()
        text_for_history = created_by(instr, meta.shell, run_args)

        def do_run() -> list[str] | None:
            run_step(env, instr, root.path, scope, state.meta, where)
            return None

        def run_key() -> str | None:
            assert cache is not None
            extra = run_extra(scope.run_env(), meta.config.user, meta.config.working_dir, meta.shell)
            return step_key(cache.key, instruction_text(instr), {**extra, **_mount_sources_key(env, instr)})

        return cached_step(run_key, opts.cache_run_layers, do_run, True)
    if isinstance(instr, Copy | Add):

        def do_copy() -> list[str] | None:
            tree = _source_tree(env, instr)
            with tempfile.TemporaryDirectory(dir=env.work_dir) as tmp:
                words = scope.expander()
                body_expander = Expander(words.env, words.escape, skip_quotes=True)
                extra = heredoc_sources(instr, Path(tmp), body_expander.word)
                if isinstance(instr, Add):
                    return run_add(instr, tree, root.path, meta.config.working_dir, where, extra, Path(tmp))
                return run_copy(instr, tree, root.path, meta.config.working_dir, where, extra)

        def copy_key() -> str | None:
            assert cache is not None
            if isinstance(instr, Add) and any(_is_remote(s) for s in instr.sources):
                return None
            extra = {"sources": sources_digest(_source_tree(env, instr), instr.sources, instr.excludes)}
            if any(doc.expand for doc in instr.heredocs):  # heredoc bodies are expanded with the stage's variables
                extra["env"] = json.dumps(sorted(scope.run_env().items()))
            return step_key(cache.key, instruction_text(instr), extra)

        return cached_step(copy_key, opts.cache_copy_layers, do_copy, False)
    if isinstance(instr, Workdir):
        new_dir = _join_workdir(meta.config.working_dir, instr.path)
        state.meta = replace(meta, config=replace(meta.config, working_dir=new_dir))

        def do_workdir() -> list[str] | None:
            return make_workdir(root.path, new_dir, meta.config.user)

        def workdir_key() -> str | None:
            assert cache is not None
            return step_key(cache.key, instruction_text(instr), {"user": meta.config.user})

        return cached_step(workdir_key, False, do_workdir, False)
    if isinstance(instr, Onbuild):  # handled by apply_metadata; kept for clarity of the dispatch
        return None
    raise BuildError(f"{instr.keyword} is not supported by kiln yet", where)


def _join_workdir(current: str, path: str) -> str:
    import posixpath

    if not posixpath.isabs(path):
        path = posixpath.join(current or "/", path)
    return posixpath.normpath(path) if path != "/" else "/"


def _env_tuple(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in env.items())


def _source_tree(env: BuildEnv, instr: Copy | Add) -> SourceTree:
    if isinstance(instr, Add) or instr.from_ is None:
        return ContextTree(env.context)
    ref = instr.from_
    index = env.plan.names.get(ref.lower())
    if index is None and ref.isdigit():
        index = int(ref)
    if index is not None:
        return RootfsTree(stage_root_view(env, index), f"stage {ref}")
    image = env.resolve_image(ref)
    return RootfsTree(image_root(env, image), f"image {ref}")


def stage_root_view(env: BuildEnv, index: int) -> Path:
    """A finished stage's root, readable (COPY --from, RUN --mount from=)."""
    return env.results[index].root.view()


def image_root(env: BuildEnv, image: Image) -> Path:
    """An image that is not a stage, laid out as a root to read from; closed with the build."""
    root = _new_root(env, "image")
    env.extra_roots.append(root)
    for desc, diff_id in image.layer_diff_ids():
        root.add_layer(diff_id, _blob_opener(env.blobs, desc.digest))  # type: ignore[arg-type]
    return root.view()


def _image(env: BuildEnv, state: _State, scope: StageScope) -> Image:
    meta = state.meta
    cfg = replace(
        state.config,
        created=env.created(),
        author=meta.author,
        config=replace(meta.config, env=_env_tuple(scope.env)),
        diff_ids=tuple(d for _, d in state.layers),
        history=tuple(state.history),
    )
    docker = state.docker_format
    layers = tuple(
        replace(desc, media_type=_convert_media_type(desc.media_type, docker)) for desc, _ in state.layers
    )
    config_bytes = cfg.to_bytes()
    config_desc = Descriptor(mt.config_media_type(docker), env.blobs.put_bytes(config_bytes), len(config_bytes))
    manifest = Manifest(config_desc, layers, mt.manifest_media_type(docker))
    manifest_bytes = manifest.to_bytes()
    env.blobs.put_bytes(manifest_bytes)
    return Image(manifest, manifest_bytes, cfg, config_bytes, StoreBlobs(env.blobs, env.origins))


def _convert_media_type(media_type: str, docker: bool) -> str:
    """Layer media types follow the manifest's family; the bytes are the same."""
    compression = mt.layer_compression(media_type)
    if compression == "unknown":
        return media_type
    try:
        return mt.layer_media_type(compression, docker)
    except ValueError as e:
        raise BuildError(f"cannot write a Docker schema 2 image: a base layer is {compression}: {e}") from None

