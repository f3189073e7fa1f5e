"""RUN and snapshots on the busybox and the Debian base: what a RUN changes is exactly what its layer
holds (whiteouts included), whatever the snapshotter; users, groups, WORKDIR, ENV/ARG, SHELL, exec form,
--network=none, background processes, and the files the sandbox provides that never reach a layer."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from integ_helpers import Kiln, Outcome, files_in, layer_count, write_context

from support.base_images import OciImage
from support.images import TarEntry, flatten_layout, read_layer_file

pytestmark = pytest.mark.root


@dataclass
class Base:
    name: str
    image: OciImage
    kiln: Kiln
    removable: str
    """A file of the base image a RUN can delete (no leading slash)."""

    @property
    def layers(self) -> int:
        return layer_count(self.image)


BASES = [
    pytest.param("busybox", id="busybox"),
    pytest.param("debian", id="debian", marks=pytest.mark.slow),
]


@pytest.fixture(params=BASES)
def base(request: pytest.FixtureRequest, kiln: Kiln) -> Base:
    name = request.param
    image: OciImage = request.getfixturevalue(f"{name}_image")
    kiln.contexts["base"] = image
    return Base(name, image, kiln, "bin/vi" if name == "busybox" else "usr/bin/yes")


# Files the sandbox provides to a RUN (mounted or generated) that must never end up in a layer.
SANDBOX_PATHS = ("etc/resolv.conf", "etc/hosts", "etc/hostname")


def _assert_no_sandbox_files(out: Outcome, base_layers: int) -> None:
    for i, layer in enumerate(out.new_layers(base_layers)):
        bad = [n for n in layer if n in SANDBOX_PATHS or n.split("/")[0] in ("proc", "sys", "dev")]
        bad += [n for n in layer if n.startswith(("etc/.wh.", "dev/", "proc/", "sys/"))]
        assert not bad, f"new layer {i} holds sandbox paths: {bad}"


CHANGES_DOCKERFILE = """\
FROM base
RUN mkdir -p /work/d /work/e && echo one > /work/mod && echo keep > /work/keep && echo x > /work/d/x \\
 && echo e > /work/e/old && echo h > /work/h1 && ln /work/h1 /work/h2 && ln -s keep /work/sym \\
 && echo s > /work/suid && chmod 4755 /work/suid && echo g > /work/gone && chmod 0750 /work/d
RUN echo two > /work/mod && rm /work/gone && rm -r /work/e && mkdir /work/e && echo new > /work/e/new \\
 && rm /{removable}
RUN true
"""


def _layer_1(layer: dict[str, TarEntry]) -> None:
    names = set(layer)
    expected = {"work", "work/d", "work/d/x", "work/e", "work/e/old", "work/mod", "work/keep", "work/h1",
                "work/h2", "work/sym", "work/suid", "work/gone"}  # fmt: skip
    assert expected <= names, f"missing: {sorted(expected - names)}"
    assert not {n for n in names - expected if not n.startswith("tmp") and n != "."}, sorted(names - expected)
    assert layer["work/sym"].type == "symlink" and layer["work/sym"].linkname == "keep"
    assert layer["work/suid"].mode == 0o4755
    assert layer["work/d"].mode == 0o750
    kinds = sorted([layer["work/h1"].type, layer["work/h2"].type])
    assert kinds == ["file", "hardlink"], kinds
    link = layer["work/h2"] if layer["work/h2"].type == "hardlink" else layer["work/h1"]
    assert link.linkname.lstrip("/") in ("work/h1", "work/h2")


def _layer_2(layer: dict[str, TarEntry], removable: str) -> None:
    names = set(layer)
    assert "work/mod" in names and layer["work/mod"].size == 4
    assert "work/.wh.gone" in names, sorted(names)
    head, _, tail = removable.rpartition("/")
    assert f"{head}/.wh.{tail}" in names, sorted(names)
    # The recreated directory: its old entry is hidden by an explicit whiteout or an opaque marker.
    assert "work/e/new" in names
    assert "work/e/.wh.old" in names or "work/e/.wh..wh..opq" in names, sorted(names)
    # Untouched files stay out of the layer.
    assert not names & {"work/keep", "work/h1", "work/h2", "work/sym", "work/suid", "work/d/x"}, sorted(names)


def _check_changes(base: Base, out: Outcome, tmp_path: Path) -> None:
    layers = out.new_layers(base.layers)
    assert len(layers) == 2, f"RUN true must add no layer: {[sorted(files_in(x))[:20] for x in layers]}"
    _layer_1(layers[0])
    _layer_2(layers[1], base.removable)
    _assert_no_sandbox_files(out, base.layers)
    tree = flatten_layout(out.layout, out.tag, tmp_path)
    assert read_layer_file(out.layout, out.tag, "work/mod") == b"two\n"
    assert "/work/gone" not in tree and "/work/e/old" not in tree and f"/{base.removable}" not in tree
    assert tree["/work/e/new"].size == 4
    assert tree["/work/h1"].nlink == 2 and tree["/work/h1"].sha256 == tree["/work/h2"].sha256
    assert tree["/work/suid"].mode == 0o4755
    history = out.config()["history"][-3:]
    assert [bool(h.get("empty_layer")) for h in history] == [False, False, True]


def test_run_changes_default_snapshotter(base: Base, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": CHANGES_DOCKERFILE.format(removable=base.removable)})
    out = base.kiln.build(ctx).ok()
    _check_changes(base, out, tmp_path)


@pytest.mark.parametrize("mode", ["full", "redo", "time"])
def test_run_changes_walking_snapshotter(base: Base, tmp_path: Path, mode: str) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": CHANGES_DOCKERFILE.format(removable=base.removable)})
    out = base.kiln.build(ctx, f"--snapshot-mode={mode}").ok()
    _check_changes(base, out, tmp_path)


USERS_DOCKERFILE = """\
FROM base
RUN grep -q '^app:' /etc/passwd || { echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \\
      && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app && chown 1000:1000 /home/app; } \\
 && echo 'kilngrp:x:4242:app' >> /etc/group && mkdir /ids && chmod 0777 /ids
RUN id > /ids/root
USER app
WORKDIR /home/app/made/deeper
RUN id > /ids/name && touch created-by-app
USER 1000
RUN id > /ids/uid
"""


def _parse_id(text: str) -> tuple[str, str, set[str]]:
    m = re.fullmatch(r"uid=(\S+) gid=(\S+)(?: groups=(\S+))?\n?", text)
    assert m, f"unexpected id output {text!r}"
    return m.group(1), m.group(2), set((m.group(3) or "").split(",")) - {""}


def test_run_users_groups_and_workdir(base: Base, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": USERS_DOCKERFILE})
    out = base.kiln.build(ctx).ok()

    def ids(name: str) -> tuple[str, str, set[str]]:
        return _parse_id(read_layer_file(out.layout, out.tag, f"ids/{name}").decode())

    # runc (under buildah, BuildKit and Docker) resolves "uid:gid" again inside the root and adds the primary
    # group's /etc/group entry to the supplementary groups, so even busybox's id (which prints getgroups()
    # only) shows it: root -> groups=0(root); app -> 1000(app) plus the groups listing app as a member.
    assert ids("root") == ("0(root)", "0(root)", {"0(root)"})
    app = ("1000(app)", "1000(app)", {"1000(app)", "4242(kilngrp)"})
    assert ids("name") == app
    # A numeric USER that names a passwd entry gets that user's primary and supplementary groups too.
    assert ids("uid") == app
    tree = flatten_layout(out.layout, out.tag, tmp_path)
    for path in ("/home/app/made", "/home/app/made/deeper", "/home/app/made/deeper/created-by-app"):
        assert (tree[path].uid, tree[path].gid) == (1000, 1000), (path, tree[path].describe())
    assert out.config()["config"]["WorkingDir"] == "/home/app/made/deeper"
    assert out.config()["config"]["User"] == "1000"


ENV_DOCKERFILE = """\
FROM base
ARG A1=arg-default
ARG A2
ENV E1="env value" E2=$A1-suffix
RUN mkdir /out && echo "$A1|$A2|$E1|$E2" > /out/shell.txt
RUN ["/bin/sh", "-c", "echo exec:$E1 > /out/exec.txt"]
RUN ["/bin/touch", "/out/$E1"]
SHELL ["/bin/sh", "-c", "echo \\"$0\\" > /out/arg0.txt"]
RUN hello world
"""


def test_run_env_arg_shell_and_exec_form(base: Base, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": ENV_DOCKERFILE})
    out = base.kiln.build(ctx, "--build-arg", "A2=from-cli").ok()

    def text(path: str) -> str:
        return read_layer_file(out.layout, out.tag, path).decode()

    assert text("out/shell.txt") == "arg-default|from-cli|env value|arg-default-suffix\n"
    assert text("out/exec.txt") == "exec:env value\n"
    tree = flatten_layout(out.layout, out.tag, tmp_path)
    assert "/out/$E1" in tree, sorted(p for p in tree if p.startswith("/out"))  # exec form: no expansion
    assert text("out/arg0.txt") == "hello world\n"
    env = out.config()["config"]["Env"]
    assert "E1=env value" in env and "E2=arg-default-suffix" in env
    assert not any(e.startswith(("A1=", "A2=")) for e in env)


def test_run_network_none(base: Base, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM base\nRUN --network=none cat /proc/net/dev > /net-none.txt\n"
    )})  # fmt: skip
    out = base.kiln.build(ctx).ok()
    lines = read_layer_file(out.layout, out.tag, "net-none.txt").decode().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines if ":" in line)
    assert interfaces == ["lo"]


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_background_daemon_is_killed(base: Base, tmp_path: Path) -> None:
    marker = f"{os.getpid() % 1000 + 7000}.{int(time.time()) % 997}"
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        f"FROM base\nRUN (sleep {marker} &) ; sleep {marker} & echo started > /started\nRUN echo next > /next\n"
    )})  # fmt: skip
    started = time.monotonic()
    out = base.kiln.build(ctx).ok()
    assert time.monotonic() - started < 300
    assert read_layer_file(out.layout, out.tag, "next") == b"next\n"
    left = _processes_with(f"sleep\0{marker}".encode())
    assert not left, f"processes left running after the build: {left}"


def test_a_writer_left_in_the_background_stops_with_its_step(base: Base, tmp_path: Path) -> None:
    # A step is over when its first process is reaped (its container is deleted while the next step runs): a
    # process it left writing must be gone by then, or the next snapshot would hold what it wrote later.
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM base\nRUN (while :; do echo x >> /grow; done) & sleep 0.3\n"
        "RUN a=$(wc -c < /grow); sleep 0.5; b=$(wc -c < /grow); echo $a $b > /sizes\n"
    )})  # fmt: skip
    out = base.kiln.build(ctx).ok()
    before, after = read_layer_file(out.layout, out.tag, "sizes").split()
    assert int(before) > 0 and before == after
    assert len(read_layer_file(out.layout, out.tag, "grow")) == int(before)


def test_resolv_conf_and_hosts_stay_out_of_layers(base: Base, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": (
        "FROM base\nRUN cat /etc/resolv.conf /etc/hosts > /seen.txt && echo x > /x\n"
        "RUN echo '1.2.3.4 extra' >> /etc/hosts || true\n"
    )})  # fmt: skip
    out = base.kiln.build(ctx).ok()
    _assert_no_sandbox_files(out, base.layers)
    tree = flatten_layout(out.layout, out.tag, tmp_path)
    for path in SANDBOX_PATHS:
        assert f"/{path}" not in tree, f"/{path} is in the image"


def test_a_relative_kiln_dir_works_for_run(tmp_path: Path, busybox_image: OciImage) -> None:
    """--kiln-dir given relative to the working directory: runc runs elsewhere, so kiln hands it absolute paths."""
    import subprocess

    from integ_helpers import KILN

    write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo hi > /x\n"})
    proc = subprocess.run(
        [str(KILN), "build", "ctx", "--kiln-dir", "kd", "--no-push", "--oci-layout-path", "out",
         "--build-context", f"busybox=oci-layout://{busybox_image.layout}:{busybox_image.tag}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kd" / "blobs").is_dir() and (tmp_path / "out" / "index.json").is_file()
