"""The reaper: a small process that outlives kiln only to undo what a killed kiln left behind.

A build leaves state outside its own process: runc containers (which keep running when the runc that started
them is gone), mounts (stage overlays, a step's secrets tmpfs) and its build directory. kiln removes them itself
on every normal exit, on ^C and on SIGTERM; a SIGKILL (or the OOM killer) gives it no chance. So the first step
of a kiln process starts one reaper, keeps a pipe to its stdin and tells it what exists:

    ["container", STATE_DIR, ID] | ["unmount", PATH] | ["remove", PATH]    (something to undo)
    ["done", "container", STATE_DIR, ID] | ["done", "unmount", PATH] | ...   (undone by kiln itself)

one JSON array a line.
When the pipe reaches end-of-file, which the kernel guarantees when kiln dies however it dies, the reaper
deletes the containers still running (their processes, cgroups and state), lazily unmounts the mounts, deepest
first, and removes the directories. The next build on the same kiln dir sweeps what a killed reaper could not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

_lock = threading.Lock()
_pipe: IO[str] | None = None


def _started() -> IO[str]:
    global _pipe
    if _pipe is None:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", "from kiln.sandbox.reaper import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                 "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            start_new_session=True,  # ^C on a terminal is for kiln; the reaper waits for kiln's end
            cwd="/",
            text=True,
        )
        assert proc.stdin is not None
        _pipe = proc.stdin
    return _pipe


def _say(words: list[str]) -> None:
    line = json.dumps(words)
    with _lock:
        pipe = _started()
        pipe.write(line + "\n")
        pipe.flush()


def track(kind: str, *args: str) -> None:
    """Something the reaper undoes if kiln dies: ("container", state_dir, id), ("unmount", path), ("remove", path)."""
    _say([kind, *args])


def untrack(kind: str, *args: str) -> None:
    """kiln undid it itself."""
    _say(["done", kind, *args])


def _undo(items: list[tuple[str, ...]]) -> None:
    from kiln import linux
    from kiln.sandbox.runc import delete_container, find_runtime
    from kiln.store.mountinfo import remove_tree

    containers = [i for i in items if i[0] == "container"]
    if containers:
        runtime = find_runtime()
        for _, state_dir, container_id in containers:
            delete_container(runtime, Path(state_dir), container_id)
    for _, path in sorted((i for i in items if i[0] == "unmount"), key=lambda i: -len(i[1])):
        try:
            linux.umount2(path, linux.MNT_DETACH)
        except OSError:
            pass
    for _, path in (i for i in items if i[0] == "remove"):
        try:
            remove_tree(Path(path))
        except OSError:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    live: list[tuple[str, ...]] = []
    for line in sys.stdin:
        words = tuple(json.loads(line))
        if words[0] == "done":
            if words[1:] in live:
                live.remove(words[1:])
        else:
            live.append(words)
    _undo(live)

