"""RUN --mount without mounting, for builds in place (a container where kiln may not mount anything).

Each of the step's mounts is *placed*: what its target held is moved aside, the mount's content is put there
(a cache directory moved in, a bind source or a secret copied in, an empty directory for a tmpfs), and after
the step the content is taken away (a cache moved back to kiln's directory, with what the step wrote in it)
and the target's own content is put back. Targets the root lacked are made as stubs and removed afterwards,
and the parents' times restored (sandbox/stubs.py), so the snapshot that follows sees only what the command
did elsewhere, as with real mounts.

What placing cannot give: a read-only mount is writable during the step (what the step writes there is
thrown away afterwards, as BuildKit does for its writable binds), and a secret is a file on the container's
disk while the step runs (removed after it). Moving is a rename where the filesystem allows it; where it
does not (an overlay directory from a lower layer, a kiln directory on another volume) it is a copy that keeps
owners, modes and times.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import SandboxError
from kiln.rootfs.copy import copy_tree
from kiln.sandbox.run import mount_target
from kiln.sandbox.spec import BindMount, Mount, SecretMount, TmpfsMount
from kiln.sandbox.stubs import MountStubs


def _remove(path: Path) -> None:
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _renamed(src: Path, dst: Path) -> bool:
    """Rename, or False when the two are on different filesystems (EXDEV)."""
    try:
        os.rename(src, dst)
        return True
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        return False


def move(src: Path, dst: Path, siblings_ok: bool = False) -> Path:
    """Move `src` to `dst` (which must not exist): a rename, else a copy keeping owners, modes and times.
    Returns where it went. siblings_ok: when `dst` is on another filesystem, a hidden name beside `src` will do
    (still a rename, so still cheap)."""
    if _renamed(src, dst):
        return dst
    beside = src.with_name(f".kiln-aside-{uuid.uuid4().hex[:12]}")
    if siblings_ok and _renamed(src, beside):
        return beside
    copy_tree(src, dst, owners=True)
    _remove(src)
    return dst


def _is_dir_mount(mount: Mount) -> bool:
    if isinstance(mount, TmpfsMount):
        return True
    if isinstance(mount, SecretMount):
        return False
    return os.path.isdir(mount.source)


@dataclass
class _Placed:
    target: Path
    aside: Path | None  # where the target's own content waits during the step
    home: Path | None  # a cache's directory in kiln's store, where its content goes back


@dataclass
class PlacedMounts:
    """The step's mounts put in place in `root`; `scratch` is kiln's own directory for what waits aside."""

    root: Path
    scratch: Path
    stubs: MountStubs = field(default_factory=MountStubs)
    placed: list[_Placed] = field(default_factory=list)

    def place_all(self, mounts: tuple[Mount, ...]) -> None:
        # Shallow targets first, so that a mount inside another mount's target lands on top of it.
        for mount in sorted(mounts, key=lambda m: os.path.normpath(m.target).count("/")):
            self._place(mount)
        self.stubs.sealed()

    def _place(self, mount: Mount) -> None:
        if isinstance(mount, BindMount) and not os.path.lexists(mount.source):
            raise SandboxError(f"bind mount source {mount.source}: does not exist")
        # Checked as the namespaced sandbox checks it (absolute, not the root, of the mount's kind).
        path = mount_target(self.root, mount.target, _is_dir_mount(mount))
        parent = path.parent
        try:
            if any(parent == p.target or parent.is_relative_to(p.target) for p in self.placed):
                # Inside another mount's content, which goes as a whole: nothing there to put back.
                os.makedirs(parent, exist_ok=True)
            elif not os.path.lexists(parent):
                self.stubs.add(parent, True)
            else:
                self.stubs.watch(parent)
            if not os.path.isdir(parent):
                raise SandboxError(f"mount target {mount.target}: its parent is not a directory")
            aside = None
            if os.path.lexists(path):
                if os.path.ismount(path):
                    raise SandboxError(f"mount target {mount.target}: a mount of the container itself")
                aside = move(path, self.scratch / f"aside{len(self.placed)}", siblings_ok=True)
            entry = _Placed(path, aside, None)
            self.placed.append(entry)
            self._fill(path, mount, entry)
        except OSError as e:
            raise SandboxError(f"mount target {mount.target}: {e.strerror or e}") from e

    def _fill(self, path: Path, mount: Mount, entry: _Placed) -> None:
        if isinstance(mount, TmpfsMount):
            os.mkdir(path)
            os.chmod(path, 0o1777)  # a tmpfs's root: mode=1777, as the namespaced sandbox mounts it
        elif isinstance(mount, SecretMount):
            mount.write_file(path)
        else:
            assert isinstance(mount, BindMount)
            if mount.movable:
                move(mount.source, path)
                entry.home = mount.source
            else:
                copy_tree(mount.source, path, owners=True)

    def remove(self) -> None:
        """Take every mount's content away and put each target's own content back (deepest first)."""
        observed = self.stubs.observe()
        errors: list[str] = []
        for entry in reversed(self.placed):
            try:
                if entry.home is not None:
                    if os.path.lexists(entry.target):
                        move(entry.target, entry.home)
                    else:  # the step removed the cache's directory itself: the cache is now empty
                        os.mkdir(entry.home, 0o755)
                else:
                    _remove(entry.target)
                if entry.aside is not None:
                    move(entry.aside, entry.target)
            except OSError as e:
                errors.append(f"{entry.target}: {e}")
        self.placed.clear()
        self.stubs.remove(observed)
        if errors:
            raise SandboxError("putting back what RUN --mount covered failed: " + "; ".join(errors))

