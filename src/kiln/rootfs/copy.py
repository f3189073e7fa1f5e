"""Copying a tree out of a root filesystem without ever opening a special file: a FIFO would block the copy
forever, and a device's content is no file's. FIFOs are made anew, sockets and devices are left out."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def copy_entry(src: str, dst: str) -> None:
    """Copy one non-directory (shutil.copytree's copy_function)."""
    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst, stat.S_IMODE(st.st_mode))


def copy_tree(src: Path, dst: Path) -> None:
    """`src` (a directory or a file) copied to `dst`; symlinks stay symlinks."""
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=copy_entry, dirs_exist_ok=True)
    else:
        copy_entry(str(src), str(dst))
