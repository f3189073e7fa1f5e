"""Copying a tree out of a root filesystem without ever opening a special file: a FIFO would block the copy
forever, and a device's content is no file's. FIFOs are made anew, sockets and devices are left out."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from kiln.rootfs import owners


def copy_entry(src: str, dst: str) -> None:
    """Copy one non-directory (shutil.copytree's copy_function)."""
    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst, stat.S_IMODE(st.st_mode))


def copy_tree(src: Path, dst: Path, owners: bool = False) -> None:
    """`src` (a directory or a file) copied to `dst`; symlinks stay symlinks; modes and times kept, and with
    `owners` the owners too (a copy that stands in for the original)."""
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=copy_entry, dirs_exist_ok=True)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        copy_entry(str(src), str(dst))
    if owners:
        _copy_owners(src, dst)


def _copy_owners(src: Path, dst: Path) -> None:
    st = os.lstat(src)
    owners.chown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))  # chown cleared setuid and setgid
        return
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in (*dirnames, *filenames):
            source = os.path.join(dirpath, name)
            target = os.path.join(dst, rel, name)
            if os.path.lexists(target):  # sockets and devices are not copied
                st = os.lstat(source)
                owners.chown(target, st.st_uid, st.st_gid)
    # chown clears setuid/setgid bits: put every mode back afterwards.
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in (".", *dirnames, *filenames):
            source = os.path.normpath(os.path.join(dirpath, name))
            target = os.path.normpath(os.path.join(dst, rel, name))
            st = os.lstat(source)
            if os.path.lexists(target) and not stat.S_ISLNK(st.st_mode):
                os.chmod(target, stat.S_IMODE(st.st_mode))
