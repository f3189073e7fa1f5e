"""What every stage of one build shares (BuildEnv), what a finished stage leaves (StageResult), and the roots
a build lays images out in: stage roots, roots of images read by COPY --from, and the trees COPY reads from."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from kiln.context.opener import BuildContext, names_files, open_named_context
from kiln.dockerfile.instructions import Add, Copy
from kiln.dockerfile.plan import BuildPlan, StagePlan
from kiln.dockerfile.scope import StageScope
from kiln.engine.events import BuildEvents
from kiln.engine.modes import BuildModes
from kiln.engine.options import BuildOptions
from kiln.engine.platforms import SharedStages
from kiln.engine.rootfs import FlatRoot, OverlayRoot, StageRoot
from kiln.engine.steps.add import context_git_auth
from kiln.engine.steps.copy import ContextTree, RootfsTree, SourceTree
from kiln.engine.steps.run import RunContext
from kiln.oci.platform import Platform
from kiln.sandbox.runc import Deletions
from kiln.snapshot.ignore import IgnoreRules
from kiln.snapshot.walk import SnapshotMode
from kiln.store.layerstore import LayerStore
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image
from kiln.transports.layercache import LayerCacheStore
from kiln.transports.registry.sources import BlobOrigin

if TYPE_CHECKING:
    from kiln.transports.registry.ahead import PushAhead


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
    reporter: BuildEvents
    blobs: BlobStore
    layers: LayerStore
    context: BuildContext
    work_dir: Path
    resolve_image: Callable[[str, Platform], Image]  # an image by name, for a platform
    deletions: Deletions  # the build's finished RUN containers, deleted in the background; its owner waits
    origins: dict[str, BlobOrigin] = field(default_factory=dict)
    results: dict[int, StageResult] = field(default_factory=dict)
    extra_roots: list[StageRoot] = field(default_factory=list)
    modes: BuildModes = field(default_factory=lambda: BuildModes("overlay", SnapshotMode.FULL, False))
    timestamp: int | None = None
    cache_store: LayerCacheStore | None = None  # opened by the first stage that uses it, shared by the rest
    named: dict[str, BuildContext] = field(default_factory=dict)  # --build-context NAME=files, opened when read
    named_lock: threading.Lock = field(default_factory=threading.Lock)
    platform: Platform = field(default_factory=Platform.host)  # the target platform of this env's plan
    shared: SharedStages | None = None  # stages built once for all the platforms of a build
    stage_keys: dict[int, str] = field(default_factory=dict)  # what each stage's result depends on (shared)
    label_platforms: bool = False  # several platforms: progress names each stage's platform
    push_ahead: PushAhead | None = None  # the target's blobs, sent to the registries while the build goes on

    def stage_label(self, st: StagePlan) -> str:
        return f"{st.platform} {st.label}" if self.label_platforms else st.label

    def created(self) -> str:
        t = self.timestamp if self.timestamp is not None else time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def blob_opener(blobs: BlobStore, digest: str) -> Callable[[], BinaryIO]:
    return lambda: blobs.open(digest)


def new_root(env: BuildEnv, name: str, *, stage: bool = False) -> StageRoot:
    kind = env.modes.roots if stage else env.modes.image_roots
    if kind == "in-place":
        return _take_slash(env)
    stage_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=env.work_dir))
    ignore = _own_root_ignore(env, stage_dir)
    if kind == "overlay":
        return OverlayRoot(stage_dir, env.layers, ignore)
    return FlatRoot(stage_dir, ignore, env.modes.walk)


def _own_root_ignore(env: BuildEnv, stage_dir: Path) -> IgnoreRules:
    return IgnoreRules.for_root(
        stage_dir,
        ignore_paths=env.opts.ignore_paths,
        work_dir=env.opts.kiln_dir,
        # /var/run is the container's own only in place; in a root of kiln's, a RUN's files there are the image's.
        ignore_var_run=False,
        mountinfo=None,
    )


def _take_slash(env: BuildEnv) -> StageRoot:
    """/ for the next stage built in place: the stage that held it is handed a root of kiln's own (laid out from
    its image when a later stage reads it), and its files leave /."""
    from kiln.engine.inplace import InPlaceRoot, SavedStageRoot, make_in_place_root

    held = False
    for result in env.results.values():
        if isinstance(result.root, InPlaceRoot):
            stage_dir = Path(tempfile.mkdtemp(prefix="saved-", dir=env.work_dir))
            layers = [(d, blob_opener(env.blobs, desc.digest)) for desc, d in result.image.layer_diff_ids()]
            result.root = SavedStageRoot(stage_dir, _own_root_ignore(env, stage_dir), env.modes.walk, layers)
            held = True
    # --pre-cleanup: before the first stage, / may still hold what an earlier build in this container left.
    clear = held or (not env.results and env.opts.pre_cleanup)
    return make_in_place_root(env.opts, env.context.root, env.modes.walk, clear=clear)


def source_tree(env: BuildEnv, instr: Copy | Add) -> SourceTree:
    if isinstance(instr, Add) or instr.from_ is None:
        return ContextTree(env.context)
    ref = instr.from_
    index = env.plan.names.get(ref.lower())
    if index is None and ref.isdigit():
        index = int(ref)
    if index is not None:
        return RootfsTree(stage_root_view(env, index), f"stage {ref}")
    named = named_context(env, ref)
    if named is not None:
        return ContextTree(named)
    image = env.resolve_image(ref, env.platform)
    return RootfsTree(image_root(env, image), f"image {ref}")


def stage_root_view(env: BuildEnv, index: int) -> Path:
    """A finished stage's root, readable (COPY --from, RUN --mount from=)."""
    return env.results[index].root.view()


def image_root(env: BuildEnv, image: Image) -> Path:
    """An image that is not a stage, laid out as a root to read from; closed with the build."""
    root = new_root(env, "image")
    env.extra_roots.append(root)
    for desc, diff_id in image.layer_diff_ids():
        root.add_layer(diff_id, blob_opener(env.blobs, desc.digest))
    return root.view()


def mount_root(env: BuildEnv, name: str | None) -> Path:
    """The root a RUN --mount's from= names: the build context (None), a stage (BuildKit matches from= against
    stage names only: a number there names an image), or an image."""
    if name is None:
        return env.context.root
    index = env.plan.names.get(name.lower())
    if index is not None:
        return stage_root_view(env, index)
    named = named_context(env, name)
    if named is not None:
        return named.root
    return image_root(env, env.resolve_image(name, env.platform))


def named_context(env: BuildEnv, name: str) -> BuildContext | None:
    """A --build-context NAME=DIR|URL|GIT-URL (files, not an image), opened the first time a step reads it and
    closed with the build; None when NAME is no such context."""
    spec = env.opts.build_contexts.get(name)
    if spec is None or not names_files(spec):
        return None
    with env.named_lock:
        if name not in env.named:
            auth = context_git_auth(env.opts.secret_sources(), env.opts.ssh_sources())
            env.named[name] = open_named_context(name, spec, env.work_dir, auth)
        return env.named[name]


def run_context(env: BuildEnv) -> RunContext:
    opts = env.opts
    return RunContext(
        secrets=opts.secret_sources(),
        ssh=opts.ssh_sources(),
        cache_root=opts.kiln_dir / "cache-mounts",
        network=opts.network,
        allow=opts.allow,
        in_place=env.modes.in_place,
        work_dir=env.work_dir,
        runner=env.modes.runner(env.deletions),
        output=env.reporter.output_stream(),
        mount_root=lambda name: mount_root(env, name),
    )
