"""kiln build --in-place (kaniko's way of working), inside a throwaway root of the tests' own making.

Each build gets a fresh root in a temporary directory: real (writable) /bin /sbin /etc /root /home /tmp /var
for the base image to land in, read-only bind mounts of the host's /usr (with /lib and /lib64 symlinks into
it, as on the host), of the repository (with kiln's venv), of kiln's Python, of the busybox layout and of the
context, a writable bind mount for the output and one for a "volume", a tmpfs for kiln's work directory and
a fresh /proc. `unshare --mount --pid --fork` makes the mount namespace (private propagation: nothing reaches
the host) and `chroot` enters the root; kiln's / is then not PID 1's root (the unshare'd shell's), which
together with /.kiln-in-place lets the build run. The namespace dies with the shell: every mount goes with
it. Layers are read with tarfile (tests/support/images.py), never by kiln.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integ_helpers import KILN, REPO, TAG, files_in, layer_count, write_context

from support.base_images import OciImage
from support.images import TarEntry, layer_entries, read_config
from support.mounts import mounts_under

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

# Where the throwaway root's mounts go (inside it).
_CTX, _OUT, _LAYOUT, _VOLUME, _KILN_DIR = "/ctx", "/out", "/layout", "/volume", "/kiln"
# What the host provides and the image must never contain.
_FOREIGN_TOPS = ("usr", "work", "proc", "dev", "sys", "kiln", "out", "ctx", "layout", "volume", ".kiln-in-place")


def _python_prefix() -> Path:
    out = subprocess.run([str(REPO / ".venv/bin/python"), "-c", "import sys; print(sys.base_prefix)"],
                         capture_output=True, check=True, text=True)  # fmt: skip
    return Path(os.path.realpath(out.stdout.strip()))


@dataclass
class Jail:
    """A throwaway root, and the host directories mounted into it."""

    root: Path
    context: Path
    out: Path
    volume: Path
    image: OciImage
    marker: bool = True

    def prepare(self) -> None:
        for d in ("bin", "sbin", "etc", "root", "home", "tmp", "var", "proc", "dev", "sys", "usr"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for d in (_CTX, _OUT, _LAYOUT, _VOLUME, _KILN_DIR, str(REPO), str(_python_prefix())):
            (self.root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for link in ("lib", "lib64"):
            if os.path.islink(f"/{link}"):
                os.symlink(os.readlink(f"/{link}"), self.root / link)
            else:
                (self.root / link).mkdir()
        if self.marker:
            (self.root / ".kiln-in-place").touch()

    def script(self, kiln_args: list[str]) -> str:
        r = str(self.root)
        py = str(_python_prefix())
        binds = [("/usr", "/usr", "ro"), (str(REPO), str(REPO), "ro"), (py, py, "ro"),
                 (str(self.image.layout), _LAYOUT, "ro"), (str(self.context), _CTX, "ro"),
                 (str(self.out), _OUT, "rw"), (str(self.volume), _VOLUME, "rw")]  # fmt: skip
        for link in ("lib", "lib64"):
            if not os.path.islink(f"/{link}") and os.path.isdir(f"/{link}"):
                binds.append((f"/{link}", f"/{link}", "ro"))
        lines = ["set -e"]
        for src, dst, mode in binds:
            lines.append(f"mount --bind {src} {r}{dst}")
            if mode == "ro":
                lines.append(f"mount -o remount,bind,ro {r}{dst}")
        lines += [f"mount -t tmpfs -o size=512m tmpfs {r}{_KILN_DIR}", f"mount -t proc proc {r}/proc",
                  f"mount --rbind /dev {r}/dev", "set +e",
                  " ".join(["chroot", r, str(KILN), *kiln_args]), "exit $?"]  # fmt: skip
        return "\n".join(lines)

    def build(self, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["build", "--in-place", "--context", _CTX, "--kiln-dir", _KILN_DIR, "--no-push",
                "--oci-layout-path", f"{_OUT}/layout", "--destination", f"localhost/inplace:{TAG}",
                "--build-context", f"busybox=oci-layout://{_LAYOUT}:{self.image.tag}", *extra]  # fmt: skip
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
        return subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", self.script(args)],
            env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    @property
    def layout(self) -> Path:
        return self.out / "layout"


@pytest.fixture
def jail(tmp_path: Path, busybox_image: OciImage) -> Iterator[Jail]:
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    j = Jail(tmp_path / "root", tmp_path / "ctx", tmp_path / "out", tmp_path / "volume", busybox_image)
    for d in (j.root, j.context, j.out, j.volume):
        d.mkdir()
    j.prepare()
    yield j
    # The mount namespace died with the unshare'd shell: nothing it mounted is left on the host.
    assert not mounts_under(tmp_path), mounts_under(tmp_path)
    with open("/proc/self/mountinfo") as f:
        after = f.read()
    assert str(tmp_path) not in after and str(tmp_path) not in before


def _described(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


def _new_layers(jail: Jail) -> list[dict[str, TarEntry]]:
    base = layer_count(jail.image)
    return [{e.name: e for e in layer} for layer in layer_entries(jail.layout, TAG)[base:]]


def _assert_nothing_foreign(layers: list[dict[str, TarEntry]]) -> None:
    prefix = str(_python_prefix()).lstrip("/")
    for i, layer in enumerate(layers):
        bad = [n for n in layer if n.split("/")[0] in _FOREIGN_TOPS or n.startswith(prefix)]
        assert not bad, f"layer {i} holds paths that are not the image's: {bad}"


DOCKERFILE = """\
FROM busybox
RUN mkdir -p /data && echo one > /data/a && echo gone > /data/b && echo leak > /volume/leak
RUN rm /data/b && echo two > /data/c && rm /bin/vi
COPY hello.txt /data/hello.txt
USER app
WORKDIR /home/app/w
RUN id -u > uid && id -G > groups && pwd > pwd && echo "$HOME" > home \\
 && (sleep 300 &) && (setsid sleep 301 &) && echo started
"""


def test_build_in_place_layers_hold_exactly_each_steps_changes(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": DOCKERFILE, "hello.txt": "hello\n"})
    proc = jail.build()
    assert proc.returncode == 0, _described(proc)

    # The base image landed in the throwaway root (not in some directory of kiln's), and the steps ran there.
    assert os.path.islink(jail.root / "bin/sh") and (jail.root / "bin/busybox").is_file()
    assert (jail.root / "data/c").read_text() == "two\n" and not (jail.root / "data/b").exists()
    assert not os.path.lexists(jail.root / "bin/vi")
    assert (jail.root / "home/app/w/uid").read_text() == "1000\n"
    # Writes to a volume reach the volume, not the image.
    assert (jail.volume / "leak").read_text() == "leak\n"

    layers = _new_layers(jail)
    _assert_nothing_foreign(layers)
    assert len(layers) == 5, [sorted(layer) for layer in layers]
    run1, run2, copy, workdir, run3 = layers
    assert set(files_in(run1)) == {"data", "data/a", "data/b"}, sorted(run1)
    assert set(files_in(run2)) == {"data", "data/c", "data/.wh.b", "bin", "bin/.wh.vi"}, sorted(run2)
    assert {n for n in copy if n != "data"} == {"data/hello.txt"}, sorted(copy)
    assert copy["data/hello.txt"].size == len("hello\n")
    assert set(workdir) <= {"home", "home/app", "home/app/w"} and "home/app/w" in workdir, sorted(workdir)
    assert (workdir["home/app/w"].uid, workdir["home/app/w"].gid) == (1000, 1000)
    # The layer tar carries the parents of what changed (as BuildKit's do).
    assert {n for n in run3 if not n.startswith("home/app/w/")} <= {"home", "home/app", "home/app/w"}, sorted(run3)
    assert {n for n in run3 if n.startswith("home/app/w/")} == {
        "home/app/w/uid", "home/app/w/groups", "home/app/w/pwd", "home/app/w/home"}  # fmt: skip
    for name in ("uid", "groups", "pwd", "home"):
        assert run3[f"home/app/w/{name}"].uid == 1000
    assert (jail.root / "home/app/w/groups").read_text() == "1000\n"
    assert (jail.root / "home/app/w/pwd").read_text() == "/home/app/w\n"
    assert (jail.root / "home/app/w/home").read_text() == "/home/app\n"
    config = read_config(jail.layout, TAG)["config"]
    assert config["User"] == "app" and config["WorkingDir"] == "/home/app/w"


def test_failing_run_fails_the_build(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": "FROM busybox\nRUN echo before && exit 3\n"})
    proc = jail.build()
    assert proc.returncode != 0, _described(proc)
    assert "exit status 3" in proc.stdout + proc.stderr, _described(proc)
    assert not (jail.layout / "index.json").exists()


def test_multi_stage_is_refused_before_anything_is_written(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": "FROM busybox AS a\nRUN true\nFROM busybox\nCOPY --from=a /bin/sh /x\n"})
    proc = jail.build()
    assert proc.returncode != 0, _described(proc)
    assert "--in-place" in proc.stderr and "one stage" in proc.stderr, _described(proc)
    assert not (jail.root / "bin/busybox").exists()


def test_network_none_is_refused_in_place(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": "FROM busybox\nRUN --network=none true\n"})
    proc = jail.build()
    assert proc.returncode != 0, _described(proc)
    assert "--network=none" in proc.stdout + proc.stderr, _described(proc)


@pytest.fixture
def jail_without_marker(jail: Jail) -> Jail:
    (jail.root / ".kiln-in-place").unlink()
    return jail


def test_refused_in_a_chroot_without_the_marker(jail_without_marker: Jail) -> None:
    jail = jail_without_marker
    write_context(jail.context, {"Dockerfile": "FROM busybox\nRUN touch /made\n"})
    proc = jail.build()
    assert proc.returncode == 2, _described(proc)
    assert "--in-place" in proc.stderr and ".kiln-in-place is missing" in proc.stderr, _described(proc)
    assert "kiln's / is not PID 1's root" in proc.stderr, _described(proc)
    assert not (jail.root / "bin/busybox").exists() and not (jail.root / "made").exists()


def test_refused_on_this_machine(tmp_path: Path) -> None:
    """On the machine the tests run on, --in-place is refused before anything happens.

    The Dockerfile could do no harm even if it ran (FROM scratch, ENV only); still, skip rather than risk it
    where this machine itself is marked as disposable."""
    if os.path.exists("/.kiln-in-place"):
        pytest.skip("this machine's / is marked as disposable for kiln")
    context = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nENV A=1\n"})
    proc = subprocess.run(
        [str(KILN), "build", "--in-place", "--context", str(context), "--kiln-dir", str(tmp_path / "k"),
         "--no-push", "--oci-layout-path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, _described(proc)
    assert "--in-place" in proc.stderr, _described(proc)
    assert not (tmp_path / "out").exists()


def test_python_used_by_the_tests_is_outside_the_shared_dirs() -> None:
    # The jail binds kiln's Python at its own path; kiln refuses an installation in /usr (see engine/inplace.py).
    assert not str(_python_prefix()).startswith(("/usr", "/bin", "/lib")), (
        "kiln's Python lives in a directory images use: the in-place tests need one of its own"
    )
    assert shutil.which("unshare") and shutil.which("chroot"), sys.executable
