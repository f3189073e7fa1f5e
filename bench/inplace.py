"""kiln build --in-place inside a throwaway root, for the bench's in-place cases.

`--in-place` is kaniko's way of working: kiln builds in the root of the container it runs in, and refuses to
unless it sees a container and the root declares itself disposable (/.kiln-in-place). The bench never lets it
near the host's /: each run gets a fresh root directory on the bench's tmpfs, built like the in-place
integration tests' Jail (tests/integration/test_integ_inplace.py), and kiln runs in it as in a container:

- real, writable /bin /sbin /etc /root /home /tmp /var for the base image to land in;
- read-only bind mounts of the host's /usr, /lib and /lib64 (kiln's Python is linked against the host's
  libraries), of the repository (kiln and its venv) and of the Python the venv was made from, each at its own
  path, since the venv's scripts and symlinks name those paths;
- the case's context read-only at /bench/context, each base image's OCI layout read-only under /bench/bases,
  and the bench's kiln state (--kiln-dir) read-write at /bench/kiln: the blobs of the bases were put there by
  the untimed namespaced preload build, so an in-place run starts from the same state as a namespaced one;
- `unshare --mount --pid --fork --kill-child --propagation private` makes a mount namespace whose mounts never reach the
  host and a PID namespace whose processes all die with its first one; `pivot_root` enters the root, as a
  container runtime does (a chrooted process is refused user namespaces, which RUN --network=none in place
  needs), and the old root is detached; a fresh /proc shows the namespace's processes only;
- `$container` is set (as podman sets it) and nothing else of the bench's environment gets in (`env -i`).

With the host's /usr at /usr (the tests' layout), a base that has a /usr of its own (debian) does not get it laid
out: kiln leaves the container's mounts alone, so the image's /usr is neither extracted nor walked by the
snapshots, and RUN uses the host's programs. `image_usr` binds the host's /usr aside (HOST_USR; only the
script's own mount and umount come from there, and kiln needs nothing of it), so the image's /usr lands in the
root as in kaniko's FROM-scratch container; /lib and /lib64 stay the host's (kiln's Python is running on them).

No network namespace: the root shares the host's, so the push to the bench's registry on 127.0.0.1 works as
from a pod. The mount namespace dies with the unshare'd shell, taking every mount with it; `remove` checks that
none is left under the root before deleting it (with what the build laid out in it).

The wall time of an in-place run includes entering the root (unshare, a dozen mounts, pivot_root: a few tens
of milliseconds), which a container runtime would spend before kaniko starts.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.paths import KILN, REPO, use_test_support

use_test_support()
from support.mounts import mounts_under  # noqa: E402

MARKER = ".kiln-in-place"
INSIDE = "/bench"
CONTEXT = f"{INSIDE}/context"
KILN_DIR = f"{INSIDE}/kiln"
BASES = f"{INSIDE}/bases"
HOST_USR = f"{INSIDE}/host/usr"
# Directories of the image's own: the base image is extracted into them (kiln leaves mount points alone).
IMAGE_DIRS = ("bin", "sbin", "etc", "root", "home", "tmp", "var", "proc", "dev", "sys", "usr")
# Only what a container runtime would give: PATH, HOME, and its mark.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
       "container": "kiln-bench"}  # fmt: skip


@functools.cache
def kiln_python_prefix() -> Path:
    """The prefix of the Python kiln's venv was made from (sys.base_prefix of the venv's interpreter): the venv's
    python symlinks into it, so it is bound into the root at its own path."""
    python = KILN.parent / "python"
    out = subprocess.run([str(python), "-c", "import sys; print(sys.base_prefix)"],
                         capture_output=True, check=True, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return Path(os.path.realpath(out.stdout.strip()))


@dataclass(frozen=True)
class Bind:
    """A host directory bound into the root at `target` (an absolute path inside the root)."""

    source: Path
    target: str
    read_only: bool = True


def host_binds(host_usr: str = "/usr") -> list[Bind]:
    """What kiln needs of the host to start: the system's /usr (at host_usr) and libraries, the repository and
    the Python."""
    binds = [Bind(Path("/usr"), host_usr)]
    for link in ("lib", "lib64"):
        # On a merged-/usr host these are symlinks into /usr: bound (at real mount points) rather than linked,
        # since kiln leaves the container's mounts alone and would otherwise replace them with the image's.
        if os.path.isdir(f"/{link}"):
            binds.append(Bind(Path(os.path.realpath(f"/{link}")), f"/{link}"))
    binds.append(Bind(REPO, str(REPO)))
    prefix = kiln_python_prefix()
    if not prefix.is_relative_to(REPO):
        binds.append(Bind(prefix, str(prefix)))
    return binds


@dataclass
class InPlaceRoot:
    """A throwaway root for one `kiln build --in-place` run, and what is bound into it."""

    root: Path
    binds: list[Bind] = field(default_factory=list)
    host_usr: str = "/usr"
    """Where the host's /usr is inside the root: /usr (the tests' Jail), or HOST_USR to leave /usr to the image."""

    @classmethod
    def for_build(cls, root: Path, context: Path, kiln_dir: Path, layouts: Mapping[str, Path],
                  image_usr: bool = False) -> InPlaceRoot:  # fmt: skip
        """The root for a build of `context` on kiln state `kiln_dir`, reading each base from its OCI layout
        (layouts: base name -> layout directory). image_usr: the host's /usr goes to HOST_USR, so that the
        image's /usr is laid out in the root, as in kaniko's container."""
        host_usr = HOST_USR if image_usr else "/usr"
        binds = [*host_binds(host_usr), Bind(context, CONTEXT), Bind(kiln_dir, KILN_DIR, read_only=False)]
        binds += [Bind(layout, f"{BASES}/{name}") for name, layout in sorted(layouts.items())]
        return cls(root, binds, host_usr)

    def inside(self, host_path: Path) -> str:
        """Where host_path is seen inside the root (through the bind that holds it; the deepest source wins)."""
        path = Path(os.path.abspath(host_path))
        for bind in sorted(self.binds, key=lambda b: len(b.source.parts), reverse=True):
            if path.is_relative_to(bind.source):
                rel = path.relative_to(bind.source)
                return bind.target if rel == Path(".") else f"{bind.target.rstrip('/')}/{rel}"
        raise ValueError(f"{host_path} is not visible inside the in-place root")

    def prepare(self) -> None:
        """The root's directories, a mount point for each bind, and the marker declaring the root disposable."""
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)  # "/": a step running as another USER must get through it
        for name in IMAGE_DIRS:
            (self.root / name).mkdir(exist_ok=True)
        for bind in self.binds:
            (self.root / bind.target.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).touch()

    def script(self, argv: list[str]) -> str:
        """The shell script that mounts, enters the root and runs argv there; its status is argv's."""
        r = shlex.quote(str(self.root))
        lines = ["set -e"]
        for bind in self.binds:
            dest = shlex.quote(f"{self.root}{bind.target}")
            lines.append(f"mount --bind {shlex.quote(str(bind.source))} {dest}")
            if bind.read_only:
                # A bind mount is made with its source's flags: read-only needs a second step.
                lines.append(f"mount -o remount,bind,ro {dest}")
        # pivot_root needs the new root to be a mount point: bound onto itself. The old root goes to /sys (a
        # directory with nothing of its own) and is detached: nothing of the host is visible but the binds.
        # After pivot_root the host's tools are only where its /usr is bound.
        usr = shlex.quote(self.host_usr)
        lines += [f"mount --rbind /dev {r}/dev", f"mount --rbind {r} {r}", f"cd {r}", "pivot_root . sys", "cd /",
                  f"{usr}/bin/mount -t proc proc /proc", f"{usr}/bin/umount -l /sys", "set +e"]  # fmt: skip
        # Not exec'd: kiln stays a child of the namespace's init (this shell), as in the integration tests.
        lines.append(shlex.join(argv))
        return "\n".join(lines)

    def command(self, argv: list[str]) -> list[str]:
        """The command line that runs argv (paths as seen inside the root) in the root, in namespaces of its own."""
        env = [f"{k}={v}" for k, v in ENV.items()]
        # --kill-child: should the bench kill unshare (timeout, interruption), the namespace's init dies with it
        # and the kernel kills every process of the namespace, kiln included.
        return ["env", "-i", *env, "unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation",
                "private", "sh", "-c", self.script(argv)]  # fmt: skip

    def remove(self) -> None:
        """Delete the root and what the build laid out in it, once it is certain nothing is mounted there."""
        # The mount namespace died with the unshare'd shell: a mount left here would mean it leaked to the host,
        # and deleting through a bind mount would delete the host's files.
        left = mounts_under(self.root)
        if left:
            raise OSError(f"still mounted below the in-place root {self.root}: {', '.join(map(str, left))}")
        shutil.rmtree(self.root)
