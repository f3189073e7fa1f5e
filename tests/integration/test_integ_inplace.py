"""kiln build --in-place (kaniko's way of working), inside a throwaway root of the tests' own making.

Each build gets a fresh root in a temporary directory: real (writable) /bin /sbin /etc /root /home /tmp /var
for the base image to land in, read-only bind mounts of the host's /usr, /lib and /lib64, of the repository
(with kiln's venv), of kiln's Python, of the busybox layout and of the context, a writable bind mount for the
output and one for a "volume", a tmpfs for kiln's work directory and a fresh /proc. `unshare --mount --pid
--fork` makes the mount namespace (private propagation: nothing reaches the host) and `pivot_root` enters the
root, as a container runtime does; `$container` is set, as podman sets it, which together with /.kiln-in-place
lets the build run. The namespace dies with the shell: every mount goes with it. Layers are read with tarfile
(tests/support/images.py), never by kiln.
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
            # Mount points, not symlinks as on the host: kiln leaves the container's mounts alone, and --cleanup
            # removes everything else in / (the dynamic loader that runs kiln's Python among it).
            if os.path.isdir(f"/{link}"):
                (self.root / link).mkdir()
        if self.marker:
            (self.root / ".kiln-in-place").touch()

    def script(self, runs: list[list[str]], wrapper: tuple[str, ...] = ()) -> str:
        r = str(self.root)
        py = str(_python_prefix())
        binds = [("/usr", "/usr", "ro"), (str(REPO), str(REPO), "ro"), (py, py, "ro"),
                 (str(self.image.layout), _LAYOUT, "ro"), (str(self.context), _CTX, "ro"),
                 (str(self.out), _OUT, "rw"), (str(self.volume), _VOLUME, "rw")]  # fmt: skip
        for link in ("lib", "lib64"):
            if os.path.isdir(f"/{link}"):
                binds.append((os.path.realpath(f"/{link}"), f"/{link}", "ro"))
        lines = ["set -e"]
        for src, dst, mode in binds:
            lines.append(f"mount --bind {src} {r}{dst}")
            if mode == "ro":
                lines.append(f"mount -o remount,bind,ro {r}{dst}")
        # pivot_root rather than chroot, as a container runtime does: the kernel refuses a user namespace
        # (RUN --network=none in place) to a chrooted process.
        lines += [f"mount -t tmpfs -o size=512m tmpfs {r}{_KILN_DIR}", f"mount --rbind /dev {r}/dev",
                  f"mount --rbind {r} {r}", f"cd {r}", "pivot_root . sys", "cd /",
                  "mount -t proc proc /proc", "umount -l /sys", "set +e"]  # fmt: skip
        # Several builds run one after another in the same container (kaniko's --cleanup use); the first
        # failure is the script's status.
        for args in runs:
            lines.append(" ".join([*wrapper, str(KILN), *args]) + " || exit $?")
        return "\n".join(lines)

    def build_args(self, *extra: str) -> list[str]:
        return ["build", "--in-place", "--context", _CTX, "--kiln-dir", _KILN_DIR, "--no-push",
                "--oci-layout-path", f"{_OUT}/layout", "--destination", f"localhost/inplace:{TAG}",
                "--build-context", f"busybox=oci-layout://{_LAYOUT}:{self.image.tag}", *extra]  # fmt: skip

    def build(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run_builds([self.build_args(*extra)])

    def run_builds(self, runs: list[list[str]], wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        # A container runtime's mark ($container, as podman sets it): kiln's evidence that it is in a container.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8",
               "container": "kiln-tests"}
        script = self.script(runs, wrapper)
        return subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script],
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


MULTI_STAGE = """\
FROM busybox AS build
RUN mkdir -p /dist/sub && echo built > /dist/artifact && ln /dist/artifact /dist/hard && ln -s artifact /dist/sym \\
 && chown 1000:1000 /dist/sub && chmod 4755 /dist/artifact
RUN --mount=type=cache,target=/cachemnt echo run >> /cachemnt/log && cp /cachemnt/log /dist/cachelog
FROM busybox AS other
RUN echo other > /o && rm /bin/vi
FROM busybox
COPY --from=build /dist /app
COPY --from=other /o /o
RUN --mount=type=bind,from=build,source=/dist,target=/bindmnt,rw cat /bindmnt/artifact > /from-bind \\
 && echo w > /bindmnt/written
RUN --mount=type=bind,source=.,target=/etc cat /etc/hello.txt > /from-context
RUN mkdir /data && echo kept > /data/kept
RUN --mount=type=tmpfs,target=/data echo t > /data/t && ls -a /data > /tmp-list
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-len \\
 && ls -ld /run/secrets/tok | cut -c1-10 > /secret-mode
RUN --mount=type=cache,target=/var/cache/c,id=c2 echo run > /var/cache/c/x && ls /var/cache > /cache-parent
RUN rm /bin/vi && touch /etc/after
"""

_SECRET = "s3cr3t-value-in-place"


def _host_build(tmp_path: Path, context: Path, image: OciImage, secret: Path) -> Path:
    """The same Dockerfile built by kiln's default (namespaced) mode on the host: the reference."""
    out = tmp_path / "host-layout"
    proc = subprocess.run(
        [str(KILN), "build", "--context", str(context), "--kiln-dir", str(tmp_path / "host-kiln"), "--no-push",
         "--oci-layout-path", str(out), "--destination", f"localhost/inplace:{TAG}", "--reproducible",
         "--build-context", f"busybox=oci-layout://{image.layout}:{image.tag}", "--secret", f"id=tok,src={secret}"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, _described(proc)
    return out


def test_multi_stage_with_mounts_in_place_equals_the_namespaced_build(jail: Jail, tmp_path: Path) -> None:
    write_context(jail.context, {"Dockerfile": MULTI_STAGE, "hello.txt": "hello\n"})
    (jail.volume / "tok").write_text(_SECRET)
    proc = jail.build("--reproducible", "--secret", f"id=tok,src={_VOLUME}/tok")
    assert proc.returncode == 0, _described(proc)
    host = _host_build(tmp_path, jail.context, jail.image, jail.volume / "tok")

    diff = subprocess.run([str(KILN), "diff", f"oci-layout:{host}:{TAG}", f"oci-layout:{jail.layout}:{TAG}"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert diff.returncode == 0, _described(diff)

    # And what the result holds is what the Dockerfile says, independently of the comparison above.
    layers = _new_layers(jail)
    _assert_nothing_foreign(layers)
    names = {n for layer in layers for n in layer}
    assert {"app/artifact", "app/hard", "app/sym", "app/sub", "app/cachelog", "o", "from-bind", "from-context",
            "tmp-list", "secret-len", "secret-mode", "cache-parent", "bin/.wh.vi", "etc/after"} <= names, sorted(names)
    # Mount targets and what the steps wrote into them stay out of every layer.
    assert not any(n in ("bindmnt", "cachemnt") or n.startswith(("bindmnt/", "cachemnt/", "data/t", "run/secrets",
                                                                   "var/cache/c"))
                   for n in names), sorted(names)
    assert not any(n.startswith("etc/hello") or n == "etc/Dockerfile" for n in names), sorted(names)
    entries = {n: e for layer in layers for n, e in layer.items()}
    assert entries["app/artifact"].mode & 0o7777 == 0o4755 and (entries["app/sub"].uid, entries["app/sub"].gid) == (
        1000, 1000)
    for layer_tar in _layer_blobs(jail):
        assert _SECRET.encode() not in layer_tar
    # The targets are as they were: /etc's own files back, /data as the stage made it, no /bindmnt or /cachemnt.
    # (Targets of kiln's own directories are avoided: where the test runs, /tmp or /mnt may hold the repository.)
    root = jail.root
    assert (root / "secret-len").read_text().strip() == str(len(_SECRET))
    assert (root / "secret-mode").read_text().strip() == "-r--------"
    assert (root / "from-bind").read_text() == "built\n" and (root / "from-context").read_text() == "hello\n"
    assert (root / "etc/passwd").is_file() and not (root / "etc/hello.txt").exists()
    assert not os.path.lexists(root / "bindmnt") and not os.path.lexists(root / "cachemnt")
    assert not os.path.lexists(root / "run/secrets/tok")
    assert (root / "tmp-list").read_text().split() == [".", "..", "t"]  # the tmpfs: empty but for the step's file
    assert sorted(os.listdir(root / "data")) == ["kept"]
    assert not os.path.lexists(root / "dist"), "the stage 'build' left its files in /"


def _layer_blobs(jail: Jail) -> list[bytes]:
    import gzip
    import json

    index = json.loads((jail.layout / "index.json").read_text())
    blobs = jail.layout / "blobs/sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    out = []
    for layer in manifest["layers"]:
        data = (blobs / layer["digest"].split(":")[1]).read_bytes()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def test_second_build_in_the_same_container_with_cleanup(jail: Jail) -> None:
    """kaniko's --cleanup: / is emptied of the build, so a second build starts clean; the cache mount's content
    survives under kiln's directory; the container's own directories are untouched."""
    write_context(jail.context, {"Dockerfile": "FROM busybox AS a\nRUN echo a > /a\nFROM busybox\n"
                                 "COPY --from=a /a /a\n"
                                 "RUN --mount=type=cache,target=/c echo x >> /c/log && cp /c/log /log\n"})
    kept = jail.root / "kiln/keep"
    proc = jail.run_builds([jail.build_args("--cleanup"), jail.build_args("--cleanup"), ["build", "--help"]])
    assert proc.returncode == 0, _described(proc)
    # Both builds ran to the end, and the second saw the cache the first one filled.
    assert proc.stderr.count("-> oci-layout://") == 2, _described(proc)
    layers = _new_layers(jail)
    assert any(e.name == "log" and e.size == len("x\nx\n") for layer in layers for e in layer.values()), layers
    # Nothing of the builds is left in /: no base image files, no stage files.
    left = sorted(p.name for p in jail.root.iterdir())
    assert not (jail.root / "bin/busybox").exists() and not (jail.root / "a").exists(), left
    assert not (jail.root / "log").exists(), left
    # The container's own directories (mount points, the marker) are still there.
    for name in ("usr", "proc", "dev", "ctx", "out", "layout", "volume", "kiln", ".kiln-in-place"):
        assert os.path.lexists(jail.root / name), (name, left)
    assert not kept.exists()


def test_mount_over_kilns_own_files_is_refused(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": f"FROM busybox\nRUN --mount=type=tmpfs,target={_CTX} true\n"})
    proc = jail.build()
    assert proc.returncode == 1, _described(proc)
    assert f"RUN --mount target {_CTX}" in proc.stderr and "Dockerfile:2" in proc.stderr, _described(proc)
    assert (jail.context / "Dockerfile").is_file()


@pytest.fixture
def http_server() -> Iterator[int]:
    """A web server on the host's 127.0.0.1, which the jail shares (no network namespace of its own)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_network_none_in_place_has_only_a_loopback(jail: Jail, http_server: int) -> None:
    # busybox's static wget crashes resolving names here: nc speaks to the server directly.
    get = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 {http_server} | grep -q '^HTTP/'"
    write_context(jail.context, {"Dockerfile": f"""\
FROM busybox
RUN {get} && echo reached > /with-network
RUN --network=none ({get} && echo reached || echo refused) > /without-network \\
 && tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /interfaces && id -u > /uid && ls -ln /etc/passwd > /owner
RUN mkdir -m 1777 /w
USER 1000:1000
RUN --network=none id -u > /w/uid1000 && (cat /proc/self/status | grep CapEff > /w/caps)
"""})
    proc = jail.build()
    assert proc.returncode == 0, _described(proc)
    root = jail.root
    assert (root / "with-network").read_text() == "reached\n"  # the control: the server is reachable
    assert (root / "without-network").read_text() == "refused\n"
    assert (root / "interfaces").read_text().split() == ["lo"]
    # IDs are mapped one to one: root is root, files keep their owners; a USER gets no capability.
    assert (root / "uid").read_text() == "0\n" and " 0 " in (root / "owner").read_text()
    assert (root / "w/uid1000").read_text() == "1000\n"
    assert (root / "w/caps").read_text().split() == ["CapEff:", "0000000000000000"]
    layers = _new_layers(jail)
    assert {n for layer in layers[1:2] for n in layer} >= {"without-network", "interfaces"}, layers


def test_network_none_where_ids_cannot_be_mapped_says_why(jail: Jail) -> None:
    write_context(jail.context, {"Dockerfile": "FROM busybox\nRUN --network=none true\n"})
    # Without CAP_SETUID kiln cannot map the user namespace's IDs.
    proc = jail.run_builds([jail.build_args()], wrapper=("setpriv", "--bounding-set=-setuid",
                                                         "--inh-caps=-all"))
    assert proc.returncode == 1, _described(proc)
    err = proc.stderr
    assert "Dockerfile:2" in err and "RUN --network=none" in err and "user namespace" in err, _described(proc)
    assert "Traceback" not in err, _described(proc)


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
    assert "$container is set" in proc.stderr, _described(proc)
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


def test_layer_cache_onbuild_and_target_in_place(jail: Jail) -> None:
    """A second build in the same container replays every step from the local layer cache (no RUN runs) and
    gives the same image; ONBUILD triggers of a stage's image run in the stage built FROM it; --target stops
    at the named stage."""
    write_context(jail.context, {"Dockerfile": """\
FROM busybox AS parent
ONBUILD RUN echo triggered > /onbuild
RUN echo parent > /parent
FROM parent AS child
RUN echo "$(date +%s%N)" > /stamp
FROM busybox AS unused
RUN exit 9
"""})
    cache = ("--cache", f"--cache-repo=oci:{_KILN_DIR}/layer-cache", "--reproducible", "--target", "child")
    first = jail.build_args(*cache, "--digest-file", f"{_OUT}/d1")
    second = jail.build_args(*cache, "--cleanup", "--digest-file", f"{_OUT}/d2")
    proc = jail.run_builds([first, second])
    assert proc.returncode == 0, _described(proc)
    d1, d2 = (jail.out / "d1").read_text(), (jail.out / "d2").read_text()
    assert d1 == d2 and d1.startswith("sha256:"), (d1, d2)  # the stamp would differ had the RUN run again
    second_log = proc.stderr[proc.stderr.index("-> oci-layout://"):]
    assert second_log.count("cached") == 3, _described(proc)  # parent's RUN, the trigger, the child's RUN
    names = {n for layer in _new_layers(jail) for n in layer}
    assert {"parent", "onbuild", "stamp"} <= names, sorted(names)
    assert "exit 9" not in proc.stderr


def test_pre_cleanup_clears_what_an_earlier_build_left(jail: Jail) -> None:
    """kaniko's fork: --pre-cleanup. The first build leaves its target's files in / (--materialize); a second
    build sees them unless --pre-cleanup clears / first."""
    first = jail.context / "first"
    write_context(first, {"Dockerfile": "FROM busybox AS a\nRUN echo a > /from-a\n"
                                        "FROM busybox\nRUN echo left > /leftover\n"})
    second = jail.context / "second"
    write_context(second, {"Dockerfile": "FROM busybox\nRUN test ! -e /leftover && echo clean > /clean\n"})

    def args(sub: str, *extra: str) -> list[str]:
        built = jail.build_args(*extra)
        built[built.index("--context") + 1] = f"{_CTX}/{sub}"
        return built

    proc = jail.run_builds([args("first", "--materialize"), args("second")])
    assert proc.returncode == 1 and "Dockerfile:2" in proc.stderr, _described(proc)  # the leftover is seen
    assert (jail.root / "leftover").read_text() == "left\n" and not (jail.root / "from-a").exists()
    proc = jail.run_builds([args("first"), args("second", "--pre-cleanup")])
    assert proc.returncode == 0, _described(proc)
    assert (jail.root / "clean").read_text() == "clean\n" and not (jail.root / "leftover").exists()
