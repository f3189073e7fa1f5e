"""The build: read the Dockerfile, plan it, build the stages the target needs (independent ones in parallel), and
write the target's image where it was asked to go."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kiln import binfmt
from kiln.context.dockerignore import DockerIgnore
from kiln.context.opener import BuildContext, open_context
from kiln.dockerfile.parse import Dockerfile, parse_dockerfile
from kiln.dockerfile.plan import BuildPlan, StagePlan, expand_plan, plan_build
from kiln.dockerfile.render import plan_to_json, render_text
from kiln.engine.events import BuildEvents, BuildSummary, LayerSummary, PlatformSummary
from kiln.engine.images import ImageResolver
from kiln.engine.inplace import InPlaceRoot
from kiln.engine.modes import choose_modes
from kiln.engine.options import BuildOptions
from kiln.engine.outputs import check_output_paths, write_outputs
from kiln.engine.platforms import SharedStages, emulated_platforms, stage_key
from kiln.engine.stage import BuildEnv, StageResult, build_stage
from kiln.engine.steps.add import context_git_auth
from kiln.engine.sweep import BUILD_PREFIX, lock_build_dir, sweep_dead_builds
from kiln.errors import UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.platform import Platform
from kiln.sandbox import reaper
from kiln.sandbox.runc import Deletions
from kiln.store.inuse import TrackedBlobStore
from kiln.store.layerstore import LayerStore
from kiln.store.mountinfo import remove_tree
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Built, Image, ImageIndex, assemble_image, assemble_index

if TYPE_CHECKING:
    from kiln.transports.registry.ahead import PushAhead

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True)
class BuildResult:
    image: Built | None
    outputs: list[str]


def _dockerfile_text(opts: BuildOptions, ctx: BuildContext | None) -> tuple[str, str, Path | None]:
    """The Dockerfile's text, the name errors use for it, and its path (for <Dockerfile>.dockerignore)."""
    if opts.dockerfile == "-":
        return sys.stdin.buffer.read().decode("utf-8", "surrogateescape"), "Dockerfile", None
    if ctx is not None and ctx.dockerfile is not None and opts.dockerfile == "Dockerfile":
        # The context was a Dockerfile's text (stdin, or a URL serving one): that is the Dockerfile.
        return ctx.dockerfile.read_bytes().decode("utf-8", "surrogateescape"), "Dockerfile", None
    candidates = []
    given = Path(opts.dockerfile)
    if given.is_absolute():
        candidates.append(given)
    else:
        # kaniko: a relative --dockerfile is looked up in the context first, then from the working directory.
        if ctx is not None:
            candidates.append(ctx.root / given)
        candidates.append(Path.cwd() / given)
    for path in candidates:
        if os.path.lexists(path) and not path.is_file():
            # Not silently the next candidate: a directory or a FIFO named Dockerfile in the context is a mistake
            # to report, not a reason to build some other Dockerfile from the current directory.
            kind = "a directory" if path.is_dir() else "a dangling symlink" if path.is_symlink() else "not a file"
            raise UsageError(f"Dockerfile {path} is {kind}, not a regular file", "--dockerfile")
        if path.is_file():
            # A Dockerfile need not be UTF-8 (BuildKit builds one with a Latin-1 comment): surrogateescape keeps
            # each stray byte for parse_dockerfile, which handles it as BuildKit does (lexer.go_text).
            try:
                return path.read_bytes().decode("utf-8", "surrogateescape"), opts.dockerfile, path
            except OSError as e:
                raise UsageError(f"cannot read {path}: {e}", "--dockerfile") from None
    raise UsageError(f"Dockerfile {opts.dockerfile} not found (looked in the context and the current directory)",
                     "--dockerfile")


def load_dockerfile(
    opts: BuildOptions, ctx: BuildContext | None, reporter: BuildEvents
) -> tuple[Dockerfile, Path | None]:
    text, name, path = _dockerfile_text(opts, ctx)
    df = parse_dockerfile(text, name)
    for w in df.warnings:
        reporter.warning(f"{name}:{w.line}: {w.message}")
    return df, path


def make_plan(df: Dockerfile, opts: BuildOptions, platform: Platform) -> BuildPlan:
    return plan_build(df, opts.build_args, opts.target, platform, Platform.host())


def _dry_run(opts: BuildOptions, reporter: BuildEvents) -> BuildResult:
    ctx = None
    local = str(opts.context).removeprefix("dir://")  # kaniko's spelling of a directory context
    if not local.startswith("tar://") and local != "-" and Path(local).is_dir():
        ctx = BuildContext(Path(local), DockerIgnore(), opts.context)
    df, _ = load_dockerfile(opts, ctx, reporter)
    plans = [make_plan(df, opts, platform) for platform in opts.platforms]
    if opts.dry_run_format == "json":
        shown = [plan_to_json(plan, expand_plan(plan)) for plan in plans]
        if opts.multi_platform:
            print(json.dumps({"platforms": {str(p): j for p, j in zip(opts.platforms, shown, strict=True)}},
                             indent=2, sort_keys=True))
        else:
            print(json.dumps(shown[0], indent=2, sort_keys=True))
    else:
        for platform, plan in zip(opts.platforms, plans, strict=True):
            if opts.multi_platform:
                print(f"# platform {platform}")
            print(render_text(plan, expand_plan(plan)), end="")
    return BuildResult(None, [])


def run_build(opts: BuildOptions, reporter: BuildEvents) -> BuildResult:
    if opts.dry_run:
        return _dry_run(opts, reporter)
    started = time.monotonic()
    if not opts.cache:
        # kaniko accepts these without --cache; kiln says that they do nothing rather than ignoring them silently.
        # --cache-ttl also ages --cache-dir's base images, which need no --cache.
        ttl_unused = opts.cache_ttl is not None and opts.registry.image_cache_dir is None
        for is_set, flag in ((ttl_unused, "--cache-ttl"),
                             (opts.cache_copy_layers, "--cache-copy-layers")):
            if is_set:
                reporter.warning(f"{flag} has no effect without --cache")
    kiln_dir = opts.kiln_dir
    _check_kiln_dir(kiln_dir)
    check_output_paths(opts)
    tmp_root = kiln_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    # What this build uses is recorded (kiln.store.inuse): a concurrent `kiln prune` or another build's --cleanup
    # keeps it until the stores are closed at the end.
    blobs = TrackedBlobStore(kiln_dir / "blobs")
    layers = LayerStore(kiln_dir / "layers")
    for swept in sweep_dead_builds(tmp_root):
        reporter.debug(f"removed what a dead build left: {swept}")
    build_dir = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{uuid.uuid4().hex[:8]}-", dir=tmp_root))
    lock = lock_build_dir(build_dir)
    reaper.track("remove", str(build_dir))  # if kiln is killed: its containers, mounts and files go too
    envs: list[BuildEnv] = []
    push_ahead: PushAhead | None = None
    deletions = Deletions()
    try:
        stdin = sys.stdin.buffer if opts.context in ("-", "tar://stdin") else None
        git_auth = context_git_auth(opts.secret_sources(), opts.ssh_sources())
        with open_context(opts.context, build_dir, stdin, kiln_dir=kiln_dir, git_auth=git_auth) as ctx:
            df, df_path = load_dockerfile(opts, ctx, reporter)
            ctx.ignore = ctx.dockerignore_for(df_path)
            modes = choose_modes(opts, build_dir, reporter.warning)
            if opts.multi_platform and modes.in_place:
                raise UsageError("this build runs in place (the container cannot make namespaces), where / is one "
                                 "root for one platform: build each platform in its own run", "--platform")
            plans = [make_plan(df, opts, platform) for platform in opts.platforms]
            binfmt.require_runnable(emulated_platforms(plans))
            resolver = ImageResolver(blobs, opts.registry, opts.build_contexts)
            shared = SharedStages() if opts.multi_platform else None
            push_ahead = _push_ahead(opts)
            envs = [
                BuildEnv(
                    opts=opts,
                    plan=plan,
                    reporter=reporter,
                    blobs=blobs,
                    layers=layers,
                    context=ctx,
                    work_dir=build_dir,
                    resolve_image=resolver,
                    origins=resolver.origins,
                    modes=modes,
                    timestamp=opts.timestamp,
                    platform=platform,
                    shared=shared,
                    label_platforms=opts.multi_platform,
                    push_ahead=push_ahead,
                    deletions=deletions,
                )
                for platform, plan in zip(opts.platforms, plans, strict=True)
            ]
            reporter.debug(f"roots: {modes.describe()}")
            if opts.materialize and not modes.in_place:
                reporter.warning("--materialize: this build runs in roots of kiln's own, not in /; the result is "
                                 "the image")
            images = _build_platforms(envs, opts)
            image = images[0] if len(images) == 1 else _index(images, list(opts.platforms), blobs)
            if push_ahead is not None:
                push_ahead.wait()
            outputs = write_outputs(image, opts, reporter)
            unused = [set(env.plan.unused_build_args([r.scope.used_build_args for r in env.results.values()]))
                      for env in envs]
            for name in sorted(set.intersection(*unused)):
                if name == "SOURCE_DATE_EPOCH":  # consumed by kiln itself: the build's timestamps
                    continue
                reporter.warning(f"build argument {name} was not consumed by any ARG")
            reporter.summary(_summary(image, outputs, time.monotonic() - started))
            return BuildResult(image, outputs)
    finally:
        deletions.wait()
        if push_ahead is not None:
            push_ahead.close()
        _close_envs(envs, opts.cleanup)
        remove_tree(build_dir)
        os.close(lock)
        reaper.untrack("remove", str(build_dir))
        blobs.close()
        # --cleanup: the layers this build extracted or adopted go, unless another build uses them too.
        try:
            for removed in layers.close(cleanup=opts.cleanup):
                reporter.debug(f"--cleanup: removed the unpacked layer {removed}")
        except OSError as e:  # the build's own outcome (or error) is what counts
            reporter.warning(f"--cleanup: cannot remove the unpacked layers: {e}")


def _check_kiln_dir(kiln_dir: Path) -> None:
    resolved = kiln_dir.resolve()
    if resolved == Path("/"):
        raise UsageError("kiln's work directory cannot be /", "--kiln-dir")
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {resolved}: {e.strerror}", "--kiln-dir") from None


def _push_ahead(opts: BuildOptions) -> PushAhead | None:
    """Where the image goes to registries, its blobs go while it is built (transports' PushAhead)."""
    if not opts.destinations or opts.no_push:
        return None
    from kiln.transports.registry import registry_options
    from kiln.transports.registry.ahead import PushAhead

    return PushAhead(list(opts.destinations), registry_options(opts.registry, pull=False))


def _close_envs(envs: list[BuildEnv], cleanup: bool) -> None:
    """Close what the builds opened; a stage shared by several platforms' builds is closed once."""
    closed: set[int] = set()
    for env in envs:
        for named in env.named.values():
            named.close()
        for root in [*(r.root for r in env.results.values()), *env.extra_roots]:
            if id(root) in closed:
                continue
            closed.add(id(root))
            root.close()
            if cleanup and isinstance(root, InPlaceRoot):
                root.clear()  # kaniko's --cleanup: / holds nothing of the build, ready for the next one


def _build_platforms(envs: list[BuildEnv], opts: BuildOptions) -> list[Image]:
    """Each platform's target image, in the order the platforms were given; several built at once."""
    if len(envs) == 1:
        return [_build_target(envs[0], opts)]
    workers = min(len(envs), opts.jobs or os.cpu_count() or 1)
    images: dict[int, Image] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="platform") as pool:
        _gather({i: pool.submit(_build_target, env, opts) for i, env in enumerate(envs)}, images)
    return [images[i] for i in range(len(envs))]


def _build_target(env: BuildEnv, opts: BuildOptions) -> Image:
    _build_stages(env)
    return _finish(env.results[env.plan.target].image, opts, env.blobs)


def _gather(futures: Mapping[K, Future[T]], into: dict[K, T]) -> None:
    """Every future's result into `into`, kept even when another failed (a stage's result holds a root to close);
    once all have finished, the first error (in the mapping's order) is raised."""
    errors: list[BaseException] = []
    for key, fut in futures.items():
        try:
            into[key] = fut.result()
        except BaseException as e:  # noqa: BLE001 - the first error is raised once all have stopped
            errors.append(e)
    if errors:
        raise errors[0]


def _index(images: list[Image], platforms: list[Platform], blobs: BlobStore) -> ImageIndex:
    """The index of a multi-platform build: a Docker manifest list when the images are Docker schema 2 (they
    follow their base images, or --format), else an OCI index. Each entry names the platform its image was built
    for, as BuildKit's do, even where a base image for another platform (said in a warning) gave its config."""
    docker = all(mt.is_docker_family(i.manifest.media_type) for i in images)
    return assemble_index(images, docker=docker, keep=blobs.put_bytes, platforms=platforms)


def _summary(built: Built, outputs: list[str], seconds: float) -> BuildSummary:
    if isinstance(built, ImageIndex):
        platforms = [PlatformSummary(str(d.platform), i.digest, _layers(i))
                     for i, d in zip(built.images, built.index.manifests, strict=True)]
        return BuildSummary(built.digest, [], outputs, seconds, platforms)
    return BuildSummary(built.digest, _layers(built), outputs, seconds)


def _layers(image: Image) -> list[LayerSummary]:
    return [LayerSummary(d.digest, d.size, h) for d, h in zip(image.layers, _layer_history(image), strict=True)]


def _build_stages(env: BuildEnv) -> None:
    plan = env.plan
    for wave in plan.waves:
        stages = [plan.stage(i) for i in wave]
        if len(stages) == 1 or env.modes.in_place:  # in place there is one / for one stage at a time
            for st in stages:
                env.results[st.index] = _stage(env, st)
            continue
        with ThreadPoolExecutor(max_workers=min(len(stages), 4), thread_name_prefix="stage") as pool:
            _gather({st.index: pool.submit(_stage, env, st) for st in stages}, env.results)


def _stage(env: BuildEnv, st: StagePlan) -> StageResult:
    """Build a stage, or take the result another platform's build made of the same inputs."""
    if env.shared is None:
        return build_stage(env, st)
    key = stage_key(env.plan, st, env.platform, env.stage_keys)
    env.stage_keys[st.index] = key
    return env.shared.get(key, lambda: build_stage(env, st))


def _layer_history(image: Image) -> list[str]:
    """What made each layer, for the summary. Base images may have fewer history entries than layers (or
    none): the entries are matched from the top, and older layers without one are left blank."""
    made_by = [h.created_by for h in image.config.history if not h.empty_layer]
    n = len(image.layers)
    return ([""] * n + made_by)[-n:] if n else []


def _finish(image: Image, opts: BuildOptions, blobs: BlobStore) -> Image:
    """--label values set on the final image (they win over LABEL instructions), --annotation values on its
    manifest (OCI manifests only: Docker schema 2 has no annotations)."""
    if not opts.labels and not opts.annotations:
        return image
    cfg = image.config
    if opts.labels:
        cfg = replace(cfg, config=replace(cfg.config, labels={**cfg.config.labels, **opts.labels}))
    docker = mt.is_docker_family(image.manifest.media_type)
    if opts.annotations and docker:
        raise UsageError("annotations need an OCI manifest, and this image is Docker schema 2 (it follows its base "
                         "image): add --format oci", "--annotation")
    return assemble_image(cfg, image.manifest.layers, image.blobs, docker=docker, keep=blobs.put_bytes,
                          annotations=opts.annotations)

