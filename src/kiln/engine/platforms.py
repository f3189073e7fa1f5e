"""One target for several platforms: each platform's build runs its own plan, side by side, and a stage whose
inputs are the same for two platforms (typically `FROM --platform=$BUILDPLATFORM`, a cross-compiler) is built
once and shared, as BuildKit shares equal steps."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TypeVar

from kiln.dockerfile.instructions import Arg, Run
from kiln.dockerfile.plan import BuildPlan, StagePlan
from kiln.oci.platform import Platform

T = TypeVar("T")


def stage_key(plan: BuildPlan, st: StagePlan, target: Platform, dep_keys: Mapping[int, str]) -> str:
    """What a stage's result depends on that can differ between the platforms of one build. Everything else
    (the Dockerfile, the context, build arguments) is the same for all of them.

    A stage sees the target platform only through its FROM line (expanded in the plan: base image and stage
    platform), through ARGs it declares (TARGETARCH, or a global ARG whose default uses it), through the stages
    it reads, and through images it reads by name (COPY --from=IMAGE is resolved for the target platform)."""
    declared = sorted({name for instr in st.instructions if isinstance(instr, Arg) for name, _ in instr.pairs})
    doc = {
        "stage": st.index,
        "platform": str(st.platform),
        "from": [st.from_.image, st.from_.platform],
        "args": {n: [plan.global_args.values.get(n), plan.platform_args.get(n)] for n in declared},
        "deps": [dep_keys[d] for d in st.deps],
        "images_for": str(target) if st.images else None,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class SharedStages:
    """Stage results by key, across the platform builds of one build. The first build to ask for a key builds
    it; the others wait for that result (or its error) rather than building it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, Future[object]] = {}

    def get(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = self._futures[key] = Future()
        if owner:
            try:
                result = build()
            except BaseException as e:
                future.set_exception(e)
                raise
            future.set_result(result)
            return result
        return future.result()  # type: ignore[return-value]


def emulated_platforms(plans: Sequence[BuildPlan]) -> list[Platform]:
    """The platforms whose binaries some RUN of these plans executes (a stage with no RUN executes nothing)."""
    found: list[Platform] = []
    for plan in plans:
        for st in plan.stages:
            if any(isinstance(i, Run) for i in st.instructions) and st.platform not in found:
                found.append(st.platform)
    return found
