"""Building one stage: its base, its root, then its instructions one by one (engine/dispatch.py), and the image
it ends with."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from kiln.dockerfile.instructions import Copy, Instruction
from kiln.dockerfile.parse import parse_instruction_text
from kiln.dockerfile.plan import StagePlan, onbuild_instructions, with_onbuild
from kiln.dockerfile.scope import StageScope
from kiln.engine.buildenv import BuildEnv, StageResult, blob_opener, named_context, new_root
from kiln.engine.dispatch import StageState, StepRunner, begin_discovery, env_tuple, make_layer, record, stage_cache
from kiln.engine.rootfs import StageRoot
from kiln.engine.steps.metadata import MetaState
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
from kiln.oci.config import ImageConfig
from kiln.rootfs import owners
from kiln.transports.image import Image, assemble_image
from kiln.transports.registry.sources import StoreBlobs

__all__ = ["BuildEnv", "StageResult", "build_stage"]


def _base(env: BuildEnv, st: StagePlan, files: bool) -> tuple[Image | None, StageScope]:
    plan = env.plan
    if st.base_stage is not None:
        parent = env.results[st.base_stage]
        return parent.image, plan.scope(st, parent=parent.scope)
    if st.base_image is None or st.base_image.lower() == "scratch" or files:
        return None, plan.scope(st, base_env={})
    started = time.monotonic()
    image = env.resolve_image(st.base_image, st.platform)
    env.reporter.phase("base", time.monotonic() - started, None, image=st.base_image)
    got = image.config.platform
    if got.os and got.architecture and not st.platform.normal().matches(got.normal()):
        # A base image with one manifest and no index is used whatever its platform, as BuildKit does; its RUN
        # steps then execute the wrong architecture's binaries, or fail. Said, not refused.
        env.reporter.warning(f"{plan.path}:{st.from_.line}: base image {st.base_image} is for {got}, not "
                             f"{st.platform}, the platform this stage builds for")
    return image, plan.scope(st, base_env=image.config.config.env_dict())


def _files_base(env: BuildEnv, st: StagePlan) -> bool:
    """Whether the stage is built FROM a --build-context of files (a directory, a git repository, a tarball URL)."""
    return st.base_stage is None and st.base_image is not None and named_context(env, st.base_image) is not None


def _seeded_with_files(st: StagePlan) -> StagePlan:
    """A stage FROM a context of files starts, as in BuildKit, with those files as its root: here a first step
    that copies them (the context's .dockerignore applied, owners root's as COPY gives them) into an empty root,
    made at the FROM line and shown as it."""
    assert st.base_image is not None
    seed = Copy(line=st.from_.line, end_line=st.from_.end_line, original=f"FROM {st.base_image}", sources=(".",),
                dest="/", from_=st.base_image, chown=None, chmod=None, link=False, parents=False, excludes=(),
                heredocs=())  # fmt: skip
    return replace(st, instructions=(seed, *st.instructions))


def build_stage(env: BuildEnv, st: StagePlan) -> StageResult:
    opts = env.opts
    path = env.plan.path
    files = _files_base(env, st)
    base, scope = _base(env, st, files)
    if files:
        st = _seeded_with_files(st)
    ahead = env.push_ahead if st.index == env.plan.target else None  # only the target's blobs are pushed
    if ahead is not None and base is not None:
        for desc in base.layers:
            ahead.send(desc, base.blobs)
    root = new_root(env, f"stage{st.index}", stage=True)
    try:
        if base is not None:
            started = time.monotonic()
            root.add_layers([(diff_id, blob_opener(env.blobs, desc.digest)) for desc, diff_id in base.layer_diff_ids()])
            env.reporter.phase("unpack", time.monotonic() - started, None, layers=len(base.layers))
            _report_lost_owners(env, root, SourceLocation(path, st.from_.line), base_layers=True)
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
        state = StageState(
            MetaState(cfg.config, cfg.author),
            cfg,
            list(base.layer_diff_ids()) if base else [],
            list(cfg.history),
            docker_format,
        )
        total = len(st.instructions)
        single = env.modes.single_snapshot
        cache = stage_cache(env, st, base) if not single else None
        steps = StepRunner(env, scope, root, state, single, cache, ahead)
        if single:
            root.begin_step()
            begin_discovery(root)
        for number, raw in enumerate(st.instructions, start=1):
            where = SourceLocation(path, raw.line)
            instr = scope.apply(raw)
            env.reporter.step_started(env.stage_label(st), number, total, _step_text(instr), str(where))
            try:
                layer = steps.run(instr, where)
            except (ContextError, SandboxError, SnapshotError, UnsafePathError) as e:
                # Errors raised below the engine do not know the instruction; the user needs it.
                raise BuildError(f"{instr.keyword}: {e}", where) from e
            except KilnError as e:
                e.at(where)  # the one place a step's error gets its Dockerfile line; its type and exit code stay
                raise
            except OSError as e:
                raise BuildError(f"{instr.keyword} failed: {e}", where) from e
            _report_lost_owners(env, root, where)
            if ahead is not None and layer is not None:
                ahead.send(layer.descriptor, StoreBlobs(env.blobs, env.origins))
            cached = cache is not None and cache.hit
            env.reporter.step_finished(layer.descriptor.size if layer else None, "cached" if cached else "")
        if single:
            layer = root.finish_step(None, lambda ch: make_layer(env, ch, state.docker_format, ahead))
            if ahead is not None and layer is not None:
                ahead.send(layer.descriptor, StoreBlobs(env.blobs, env.origins))
            record(env, state, layer, "single snapshot of the stage")
        image = _image(env, state, scope)
        return StageResult(image, scope, root, state.docker_format, cache.key if cache else None)
    except BaseException:
        root.close()
        raise


def _report_lost_owners(env: BuildEnv, root: StageRoot, where: SourceLocation, *, base_layers: bool = False) -> None:
    """Say which instruction met owners a one-ID user namespace cannot represent (kiln.rootfs.owners)."""
    count, examples = owners.lost.take()
    if not count:
        return
    base = str(root.path)
    shown = ", ".join(f"/{os.path.relpath(p, base) if p.startswith(base + '/') else p} (uid {uid}, gid {gid})"
                      for p, uid, gid in examples)
    files = f"{count} files" if count > 1 else "1 file"
    # A base image's layers go into the image as they are: there only the steps' view of them changes.
    fate = "are root's while the steps run (the base layers keep them)" if base_layers else "stay root's in the image"
    env.reporter.warning(f"{where}: {files} could not be given their owner in this user namespace, which maps one "
                         f"ID, and {fate}: {shown}")


def _step_text(instr: Instruction) -> str:
    text = " ".join(instr.original.split())
    return text if len(text) <= 100 else text[:97] + "..."


def _image(env: BuildEnv, state: StageState, scope: StageScope) -> Image:
    meta = state.meta
    cfg = replace(
        state.config,
        created=env.created(),
        author=meta.author,
        config=replace(meta.config, env=env_tuple(scope.env)),
        diff_ids=tuple(d for _, d in state.layers),
        history=tuple(state.history),
    )
    docker = state.docker_format
    layers = tuple(
        replace(desc, media_type=_convert_media_type(desc.media_type, docker)) for desc, _ in state.layers
    )
    return assemble_image(cfg, layers, StoreBlobs(env.blobs, env.origins), docker=docker, keep=env.blobs.put_bytes)


def _convert_media_type(media_type: str, docker: bool) -> str:
    """Layer media types follow the manifest's family; the bytes are the same."""
    compression = mt.layer_compression(media_type)
    if compression == "unknown":
        return media_type
    try:
        return mt.layer_media_type(compression, docker)
    except ValueError as e:
        raise BuildError(f"cannot write a Docker schema 2 image: a base layer is {compression}: {e}") from None
