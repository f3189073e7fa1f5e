"""What the user sees while a build runs: steps, timings, bytes, and a summary (the engine's BuildEvents, rendered).

Three renderings of the same events: rich text on a terminal, plain lines elsewhere (CI logs), and JSON lines for
machines (``--log-format json``), which also carry per-phase timings for the benchmarks.
"""

from __future__ import annotations

import io
import json
import sys
import time
from typing import Any, BinaryIO, TextIO

from kiln.engine.events import BuildSummary, LayerSummary


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class Reporter:
    """Plain text lines: what CI logs get. Subclasses change the rendering, not the events."""

    def __init__(self, out: TextIO | None = None, verbosity: str = "info") -> None:
        self.out = out or sys.stderr
        self.verbose = verbosity in ("debug", "trace")
        self.quiet = verbosity in ("error", "fatal", "panic", "warn", "warning")
        self._step_start = 0.0

    def _emit(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self._emit(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self._emit(message)

    def warning(self, message: str) -> None:
        self._emit(f"WARNING: {message}")

    def step_started(self, stage: str, number: int, total: int, text: str, location: str) -> None:
        self._step_start = time.monotonic()
        if not self.quiet:
            self._emit(f"[{stage} {number}/{total}] {text}")

    def step_output(self, data: bytes) -> None:
        """Output of a RUN, streamed as it comes."""
        self.out.write(data.decode("utf-8", "replace"))
        self.out.flush()

    def step_finished(self, layer_size: int | None, note: str = "") -> None:
        elapsed = time.monotonic() - self._step_start
        if self.quiet:
            return
        what = f"layer {human_size(layer_size)}" if layer_size is not None else "no layer"
        self._emit(f"  done in {elapsed:.2f}s, {what}{', ' + note if note else ''}")

    def output_stream(self) -> BinaryIO | None:
        """Where a RUN's output goes as it runs: the same stream as the progress lines."""
        self.out.flush()
        buffer: BinaryIO | None = getattr(self.out, "buffer", None)
        return buffer if buffer is not None else _TextSink(self)  # type: ignore[return-value]

    def phase(self, name: str, seconds: float, nbytes: int | None = None, **extra: Any) -> None:
        self.debug(f"  {name}: {seconds:.3f}s" + (f", {human_size(nbytes)}" if nbytes is not None else ""))

    def summary(self, s: BuildSummary) -> None:
        if self.quiet:
            return
        self._emit(f"built {'the index ' if s.platforms else ''}{s.digest} in {s.seconds:.2f}s")
        for i, layer in enumerate(s.layers):
            size = human_size(layer.size)
            self._emit(f"  layer {i + 1}: {layer.digest[:19]} {size:>10}  {_one_line(layer.created_by)}")
        for p in s.platforms:
            self._emit(f"  {p.platform}: {p.digest} ({len(p.layers)} layers, "
                       f"{human_size(sum(la.size for la in p.layers))})")
        for o in s.outputs:
            self._emit(f"  -> {o}")


class RichReporter(Reporter):
    """Coloured output for a terminal, through rich."""

    def __init__(self, out: TextIO | None = None, verbosity: str = "info") -> None:
        super().__init__(out, verbosity)
        from rich.console import Console

        self.console = Console(file=self.out, highlight=False)

    def _emit(self, text: str) -> None:
        self.console.print(text, markup=False)

    def step_started(self, stage: str, number: int, total: int, text: str, location: str) -> None:
        self._step_start = time.monotonic()
        if not self.quiet:
            self.console.print(f"[bold cyan][{stage} {number}/{total}][/] [bold]{_escape(text)}[/] [dim]{location}[/]")

    def step_finished(self, layer_size: int | None, note: str = "") -> None:
        elapsed = time.monotonic() - self._step_start
        if self.quiet:
            return
        what = f"layer {human_size(layer_size)}" if layer_size is not None else "no layer"
        self.console.print(f"  [green]done[/] in {elapsed:.2f}s, {what}{', ' + note if note else ''}")

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]WARNING:[/] {_escape(message)}")

    def summary(self, s: BuildSummary) -> None:
        if self.quiet:
            return
        from rich.table import Table

        if s.platforms:  # one image per platform: their digests, not every layer of each
            super().summary(s)
            return
        table = Table(title=f"built {s.digest} in {s.seconds:.2f}s", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("digest")
        table.add_column("size", justify="right")
        table.add_column("created by")
        for i, layer in enumerate(s.layers):
            table.add_row(str(i + 1), layer.digest[:19], human_size(layer.size), _one_line(layer.created_by))
        self.console.print(table)
        for o in s.outputs:
            self.console.print(f"  -> {_escape(o)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _TextSink(io.RawIOBase):
    """A binary stream that hands what is written to a reporter's step_output (for text streams without a
    binary buffer, and for JSON events)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(b)
        if data:
            self.reporter.step_output(data)
        return len(data)


class JsonReporter(Reporter):
    """One JSON object per line, for machines and the benchmarks."""

    def _event(self, event: str, **fields: Any) -> None:
        fields = {"time": round(time.time(), 3), "event": event, **fields}
        print(json.dumps(fields, sort_keys=True), file=self.out, flush=True)

    def info(self, message: str) -> None:
        self._event("info", message=message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self._event("debug", message=message)

    def warning(self, message: str) -> None:
        self._event("warning", message=message)

    def step_started(self, stage: str, number: int, total: int, text: str, location: str) -> None:
        self._step_start = time.monotonic()
        self._event("step", stage=stage, number=number, total=total, text=text, location=location)

    def step_output(self, data: bytes) -> None:
        self._event("output", data=data.decode("utf-8", "replace"))

    def output_stream(self) -> BinaryIO | None:
        return _TextSink(self)  # type: ignore[return-value]

    def step_finished(self, layer_size: int | None, note: str = "") -> None:
        seconds = round(time.monotonic() - self._step_start, 4)
        # A step replayed from the layer cache says so in its own field: the benchmarks count them.
        self._event("step_done", seconds=seconds, layer_size=layer_size, note=note, cached=note == "cached")

    def phase(self, name: str, seconds: float, nbytes: int | None = None, **extra: Any) -> None:
        self._event("phase", phase=name, seconds=round(seconds, 4), bytes=nbytes, **extra)

    def summary(self, s: BuildSummary) -> None:
        self._event(
            "summary",
            digest=s.digest,
            seconds=round(s.seconds, 3),
            layers=_layers_json(s.layers),
            outputs=s.outputs,
            **({"platforms": [{"platform": p.platform, "digest": p.digest, "layers": _layers_json(p.layers)}
                              for p in s.platforms]} if s.platforms else {}),
        )


def _layers_json(layers: list[LayerSummary]) -> list[dict[str, Any]]:
    return [{"digest": la.digest, "size": la.size, "created_by": la.created_by} for la in layers]


def make_reporter(log_format: str, verbosity: str, out: TextIO | None = None) -> Reporter:
    out = out or sys.stderr
    if log_format == "json":
        return JsonReporter(out, verbosity)
    if log_format == "color" or (log_format == "auto" and out.isatty()):
        return RichReporter(out, verbosity)
    return Reporter(out, verbosity)


def _one_line(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
