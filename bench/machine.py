"""A description of the machine the numbers were taken on."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from typing import Any

from bench.paths import REPO


def _first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def urandom_mb_per_s(mib: int = 256) -> float:
    """How fast /dev/urandom gives bytes here (the big-file case draws 1 GiB from it)."""
    started = time.perf_counter()
    with open("/dev/urandom", "rb", buffering=0) as f:
        for _ in range(mib):
            f.read(1 << 20)
    return mib * (1 << 20) / (time.perf_counter() - started) / 1e6


def describe_machine() -> dict[str, Any]:
    revision = _output(["git", "rev-parse", "HEAD"])
    dirty = bool(_output(["git", "status", "--porcelain", "--untracked-files=no"]))
    mem_kib = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "host": socket.gethostname(),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_bytes": int(mem_kib) * 1024 if mem_kib.isdigit() else None,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "kiln_revision": revision + ("-dirty" if dirty else ""),
        "buildah_version": _output(["buildah", "--version"]),
        "urandom_mb_per_s": round(urandom_mb_per_s(), 1),
    }
