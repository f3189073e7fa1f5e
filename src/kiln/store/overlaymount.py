"""Mounting and unmounting overlay filesystems whose lower layers come from the layer store.

Every mount uses index=off, metacopy=off and redirect_dir=off, because a step's upper directory is later read
as the step's layer and then moved into the store as a lower of other stacks:

- metacopy=on would copy up only the metadata of a file whose mode or owner changed; the upper file would then
  carry no data, and a layer built from the upper directory would contain an empty file.
- redirect_dir=on would record a renamed directory as an xattr pointing into the lower layers instead of copying
  it; the upper directory would not contain the directory's content, and the pointer is meaningless once the
  upper is stacked on other lowers. With it off, rename(2) of a lower directory fails with EXDEV and tools fall
  back to copy + delete, which lands in the upper as plain entries.
- index=on ties upper and lower inodes together through file handles in the work directory and refuses to mount
  an upper with different lowers later; the store reuses uppers as lowers of new stacks, so it must stay off.

Many stacked layers make a long lowerdir= option, and the legacy mount(2) copies options into one page. The new
mount API (fsopen/fsconfig, kernel >= 6.8) takes one "lowerdir+" per layer with no length limit and no escaping;
when it is missing, the legacy path replaces each lower by a short symlink in a temporary directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kiln import linux
from kiln.errors import SandboxError
from kiln.rootfs import overlayattrs

# The "new mount API" syscalls have the same numbers on every architecture that uses the generic table
# (x86_64, aarch64, riscv64, ...), since they were added after the tables were unified.
# The kernel's overlayfs limit on stacked lower layers (OVL_MAX_STACK).
MAX_LOWERS = 500

_OPTIONS = ("index=off", "metacopy=off", "redirect_dir=off")
# In a user namespace overlayfs refuses redirect_dir=off; nofollow creates no redirect either (a renamed lower
# directory is copied up whole), and userxattr keeps its marks in user.overlay.* (kiln.rootfs.overlayattrs).
_USERNS_OPTIONS = ("index=off", "metacopy=off", "redirect_dir=nofollow", "userxattr")


def _options() -> tuple[str, ...]:
    return _USERNS_OPTIONS if overlayattrs.unprivileged() else _OPTIONS

class MountError(SandboxError):
    """An overlay mount or unmount that the kernel refused."""


def _kernel_log(fs_fd: int) -> str:
    """Messages the filesystem left on an fsopen descriptor (the new API's replacement for dmesg)."""
    lines = []
    while True:
        try:
            msg = os.read(fs_fd, 1024)
        except OSError:
            break
        if not msg:
            break
        lines.append(msg.decode(errors="replace").strip())
    return "; ".join(lines)


def _mount_new_api(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    fs_fd = linux.fsopen("overlay")
    mnt_fd = -1
    try:
        try:
            for lower in lowers:
                linux.fsconfig_string(fs_fd, "lowerdir+", lower)
            linux.fsconfig_string(fs_fd, "upperdir", upper)
            linux.fsconfig_string(fs_fd, "workdir", work)
            for option in _options():
                key, _, value = option.partition("=")
                if value:
                    linux.fsconfig_string(fs_fd, key, value)
                else:
                    linux.fsconfig_flag(fs_fd, key)
            linux.fsconfig_create(fs_fd)
            mnt_fd = linux.fsmount(fs_fd)
        except OSError as exc:
            log = _kernel_log(fs_fd)
            raise OSError(exc.errno, f"{exc.strerror}{' (' + log + ')' if log else ''}") from None
        linux.move_mount_to(mnt_fd, target)
    finally:
        if mnt_fd >= 0:
            os.close(mnt_fd)
        os.close(fs_fd)


def _legacy_options(lowers: Sequence[str], upper: Path, work: Path) -> bytes:
    return ",".join([f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}", *_options()]).encode()


def _needs_escaping(path: Path) -> bool:
    return any(c in str(path) for c in ",:\\")


def _mount_legacy(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    for path in (upper, work):
        if _needs_escaping(path):
            raise MountError(f"overlay: upper/work path {path} contains ',', ':' or '\\'")
    options = _legacy_options([str(p) for p in lowers], upper, work)
    links_dir: str | None = None
    try:
        if len(options) >= page or any(_needs_escaping(p) for p in lowers):
            # Overlay resolves each lowerdir once at mount time, following symlinks, so short links stand in
            # for long paths and can be removed right after the mount.
            links_dir = tempfile.mkdtemp(prefix="kl", dir="/tmp")
            short = []
            for i, lower in enumerate(lowers):
                link = os.path.join(links_dir, format(i, "x"))
                os.symlink(os.path.abspath(lower), link)
                short.append(link)
            options = _legacy_options(short, upper, work)
            if len(options) >= page:
                raise MountError(f"overlay: {len(lowers)} lower layers do not fit in one page of mount options")
        linux.mount("overlay", target, "overlay", 0, options)
    finally:
        if links_dir is not None:
            shutil.rmtree(links_dir, ignore_errors=True)


def mount_overlay(lowers: Sequence[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay on target: lowers top first, a writable upper, and its work dir (same filesystem)."""
    if not lowers:
        raise MountError("overlay: at least one lower layer is needed")
    if len(lowers) > MAX_LOWERS:
        raise MountError(f"overlay: {len(lowers)} lower layers exceed the kernel's limit of {MAX_LOWERS}")
    lowers = [Path(os.path.abspath(p)) for p in lowers]
    upper, work, target = (Path(os.path.abspath(p)) for p in (upper, work, target))
    try:
        _mount_new_api(lowers, upper, work, target)
        return
    except OSError as exc:
        # ENOSYS: no new mount API; EINVAL on "lowerdir+": kernel older than 6.8. Anything else is a real
        # refusal that the legacy path would only repeat less clearly.
        if exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise MountError(f"overlay mount on {target} failed: {exc.strerror}") from None
        new_api_error = exc
    try:
        _mount_legacy(lowers, upper, work, target)
    except OSError as exc:
        raise MountError(
            f"overlay mount on {target} failed: {exc.strerror} (new mount API: {new_api_error.strerror})"
        ) from None


def unmount(target: Path, *, lazy: bool = False) -> None:
    """Unmount target; lazy detaches it even while busy (the mount goes away when its last user does)."""
    try:
        linux.umount2(os.path.abspath(target), linux.MNT_DETACH if lazy else 0)
    except OSError as e:
        raise MountError(f"unmount {target} failed: {os.strerror(e.errno or 0)}") from None


def overlay_supported(probe_dir: Path) -> bool:
    """Whether an overlay with our options can be mounted with upper and work dirs inside probe_dir.

    Tries a real mount: the filesystem of probe_dir (it must support d_type and the xattrs overlayfs marks
    opaque directories with), our privileges, and the kernel all have a say, and only the kernel knows the
    answer.
    """
    try:
        probe_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=probe_dir))
    except OSError:
        return False
    try:
        for name in ("lower", "upper", "work", "merged"):
            (tmp / name).mkdir()
        (tmp / "lower" / "f").write_bytes(b"x")
        try:  # layers mark opaque directories with it: trusted.* needs root of the host, user.* a filesystem
            os.setxattr(tmp / "lower", overlayattrs.opaque(), b"y")  # that takes user xattrs
        except OSError:
            return False
        try:
            mount_overlay([tmp / "lower"], tmp / "upper", tmp / "work", tmp / "merged")
        except MountError:
            return False
        try:
            (tmp / "merged" / "f").unlink()
            whiteout = os.lstat(tmp / "upper" / "f")
            return os.major(whiteout.st_rdev) == 0 and os.minor(whiteout.st_rdev) == 0
        except OSError:
            return False
        finally:
            unmount(tmp / "merged", lazy=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
