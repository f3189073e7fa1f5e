"""A tiny busybox rootfs (from the host's busybox-static) for sandbox tests, one fresh copy per test."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
tty:x:5:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
"""


def make_busybox_rootfs(root: Path) -> Path:
    """bin/busybox + applet links, etc/passwd and etc/group, usr/local/bin/kiln-probe (a script found only
    through PATH inside the rootfs). No /proc /dev /sys /etc/hosts /etc/resolv.conf: the sandbox must make
    and remove them itself."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = os.popen(f"{BUSYBOX} --list").read().split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "root").mkdir(mode=0o700)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    probe = root / "usr" / "local" / "bin" / "kiln-probe"
    probe.parent.mkdir(parents=True)
    probe.write_text("#!/bin/sh\necho from-usr-local-bin\n")
    probe.chmod(probe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "rootfs")
