"""What the engine tells the world while it builds: an interface it emits to and knows no screen behind.

progress.py renders these events (rich text, plain lines, JSON); the command line connects the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol


@dataclass
class LayerSummary:
    digest: str
    size: int
    created_by: str


@dataclass
class PlatformSummary:
    platform: str
    digest: str
    layers: list[LayerSummary] = field(default_factory=list)


@dataclass
class BuildSummary:
    digest: str  # of the image, or of the index of a multi-platform build
    layers: list[LayerSummary] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    platforms: list[PlatformSummary] = field(default_factory=list)  # a multi-platform build's images


class BuildEvents(Protocol):
    def debug(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def step_started(self, stage: str, number: int, total: int, text: str, location: str) -> None: ...

    def step_finished(self, layer_size: int | None, note: str = "") -> None: ...

    def output_stream(self) -> BinaryIO | None:
        """Where a RUN's output goes while it runs (None: kiln's own stdout and stderr)."""

    def phase(self, name: str, seconds: float, nbytes: int | None = None, **extra: Any) -> None:
        """A timed part of the work (base, unpack, execute, snapshot, tar, compress, push)."""

    def summary(self, s: BuildSummary) -> None: ...
