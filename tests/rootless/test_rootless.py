"""An ordinary user's builds: kiln enters a user namespace of its own and makes the same images as root.

Every image is compared with root's build of the same Dockerfile by `kiln diff --layers` (file trees, owners,
modes, contents, each layer's entries, the config)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support.base_images import OciImage
from support.images import flatten_layout
from support.registry import Registry
from support.rootless import REPO, User

HARNESS = REPO / "tests" / "conformance"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))

from harness import Bases, Case, load_cases, prepare  # noqa: E402

pytestmark = [pytest.mark.root]

# A sample of the conformance suite: multi-stage builds, --chown, USER, whiteouts and opaque directories,
# hardlinks, setuid bits, WORKDIR ownership; buildah plays no part here.
_SAMPLE = re.compile(r"^(multistage-|copy-chown-|user-|workdir-|run-delete-|run-opaque|run-whiteout|run-hardlink|"
                     r"copy-hardlink|run-setuid|run-chown|run-chmod|copy-from-stage|add-tar-chown|add-chown|"
                     r"heredoc-run|run-dir-to|run-file-to|volume-then-run|debian-user-then-run|"
                     r"debian-copy-chown-names|debian-setcap|debian-delete-many)")
# Device nodes cannot be made in a user namespace: run-mknod is test_mknod_is_refused_with_the_command's_error.
_LEFT_OUT = {"run-mknod"}
CASES = [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.debian or c.meta.get("slow") else [])
         for c in load_cases() if _SAMPLE.match(c.name) and c.name not in _LEFT_OUT
         and c.expect in ("same", "kiln-only") and not c.meta.get("serve")]


def _readable(tree: Path) -> None:
    for path in (tree, *tree.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o555 if path.is_dir() else path.stat().st_mode | 0o444)


def _context(user_dir: Path, dockerfile: str) -> Path:
    """A context with this Dockerfile in user_dir, and user_dir readable by the build's user."""
    ctx = user_dir / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    _readable(user_dir)
    return ctx


def _root_build(ctx: Path, out: Path, kiln_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiln", "build", "--context", str(ctx), "--dockerfile", str(ctx / "Dockerfile"),
         "--no-push", "--oci-layout-path", str(out), "--kiln-dir", str(kiln_dir), "--insecure-pull", *extra],
        capture_output=True, text=True, timeout=900, cwd=ctx,
    )  # fmt: skip


def _user_build(user: User, ctx: Path, out: Path, kiln_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return user.kiln("build", "--context", str(ctx), "--dockerfile", str(ctx / "Dockerfile"), "--no-push",
                     "--oci-layout-path", str(out), "--kiln-dir", str(kiln_dir), "--insecure-pull", *extra,
                     cwd=ctx)  # fmt: skip


def _same(a: Path, b: Path, ignore: list[str] | None = None) -> None:
    flags = [f"--ignore={path}" for path in ignore or []]
    r = subprocess.run([sys.executable, "-m", "kiln", "diff", "--layers", *flags, f"oci-layout:{a}",
                        f"oci-layout:{b}"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, f"root's image (a) and the user's (b) differ:\n{r.stdout}{r.stderr}"


def _case_flags(case: Case) -> list[str]:
    flags = [f"--build-arg={k}={v}" for k, v in case.meta.get("build_args", {}).items()]
    return flags + (["--target", case.meta["target"]] if case.meta.get("target") else [])


@pytest.fixture(scope="session")
def bases(busybox_ref: str, request: pytest.FixtureRequest) -> Bases:
    return Bases(busybox=busybox_ref, debian_getter=lambda: request.getfixturevalue("debian_ref"))


@pytest.mark.parametrize("case", CASES)
def test_conformance_case_matches_roots_build(case: Case, bases: Bases, rootless_user: User, user_dir: Path) -> None:
    ctx = prepare(case, user_dir, bases, None)
    _readable(user_dir)
    root = _root_build(ctx, user_dir / "root-image", user_dir / "root-kiln", *_case_flags(case))
    assert root.returncode == 0, root.stderr
    user = _user_build(rootless_user, ctx, user_dir / "user-image", user_dir / "user-kiln", *_case_flags(case))
    assert user.returncode == 0, user.stderr
    assert "Traceback" not in user.stderr
    # What a case leaves out of the comparison with buildah is what differs from run to run (apt's logs).
    _same(user_dir / "root-image", user_dir / "user-image", case.meta.get("ignore_paths", []))


MOUNTS = """\
FROM {busybox} AS tools
RUN mkdir -p /opt/tool && echo tool > /opt/tool/bin && chown -R 1000:1000 /opt/tool && ln /opt/tool/bin /opt/tool/hard

FROM {busybox}
ARG SALT=1
RUN --mount=type=cache,target=/var/cache/app,uid=1000,gid=1000 echo "$SALT" >> /var/cache/app/log && \\
    cp /var/cache/app/log /cache-log && stat -c '%u:%g' /var/cache/app > /cache-owner
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/mnt/tool cp -a /mnt/tool /tool && \\
    stat -c '%u:%g %h' /mnt/tool/bin > /bind-owner
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && ls -ld /scratch | cut -c1-10 > /tmpfs-mode
RUN --mount=type=secret,id=token,uid=1000,mode=0400 stat -c '%u %a' /run/secrets/token > /secret-owner && \\
    wc -c < /run/secrets/token > /secret-size
COPY --from=tools --chown=55:66 /opt/tool /copied-tool
RUN adduser -D -u 1234 -g '' bob 2>/dev/null || echo 'bob:x:1234:1234::/home/bob:/bin/sh' >> /etc/passwd
USER bob
WORKDIR /home/bob/work
RUN id > id.txt && rm -f /tmp/* 2>/dev/null; true
"""


@pytest.mark.parametrize("snapshot_mode", ["auto", "full"])
def test_run_mounts_and_stages_match_roots_build(busybox_ref: str, rootless_user: User, user_dir: Path,
                                                 snapshot_mode: str) -> None:  # fmt: skip
    """In overlay roots (overlayfs mounted in the user namespace, its marks in user.overlay.*) and in walked ones."""
    secret = user_dir / "token"
    secret.write_text("not-a-real-token\n")
    ctx = _context(user_dir, MOUNTS.format(busybox=busybox_ref))
    flags = ["--secret", f"id=token,src={secret}"]
    root = _root_build(ctx, user_dir / "root-image", user_dir / "root-kiln", *flags)
    assert root.returncode == 0, root.stderr
    user = _user_build(rootless_user, ctx, user_dir / "user-image", user_dir / "user-kiln", *flags,
                       f"--snapshot-mode={snapshot_mode}", "--verbosity=debug")  # fmt: skip
    assert user.returncode == 0, user.stderr
    expected = "roots: overlay" if snapshot_mode == "auto" else "roots: flat, walking (full)"
    assert expected in user.stderr
    _same(user_dir / "root-image", user_dir / "user-image")


def test_the_kiln_dir_defaults_to_the_users_data_directory(busybox_ref: str, rootless_user: User,
                                                          user_dir: Path, registry: Registry) -> None:  # fmt: skip
    """No --kiln-dir: $XDG_DATA_HOME/kiln (here ~/.local/share/kiln), owned by the user; the image is pushed to a
    registry as root's would be."""
    ctx = _context(user_dir, f"FROM {busybox_ref}\nRUN echo hi > /hi\n")
    data = user_dir / "xdg"
    data.mkdir()
    os.chown(data, rootless_user.uid, rootless_user.gid)
    dest = registry.ref("rootless/pushed", "v1")
    r = rootless_user.kiln("build", "--context", str(ctx), "--destination", dest, "--insecure", "--insecure-pull",
                           cwd=ctx, env={"XDG_DATA_HOME": str(data)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    kiln_dir = data / "kiln"
    assert (kiln_dir / "blobs").is_dir()
    assert kiln_dir.stat().st_uid == rootless_user.uid
    config = subprocess.run(["skopeo", "inspect", "--config", *registry.tool_flags(), f"docker://{dest}"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert '"architecture"' in config


def test_mknod_is_refused_with_the_commands_error(busybox_ref: str, rootless_user: User, user_dir: Path) -> None:
    """A user namespace cannot make device nodes: the step fails with the command's own message and kiln's
    line naming the instruction, not with a traceback."""
    ctx = _context(user_dir, f"FROM {busybox_ref}\nRUN mknod /null c 1 3\n")
    r = _user_build(rootless_user, ctx, user_dir / "out", user_dir / "kiln")
    assert r.returncode != 0
    assert "Operation not permitted" in r.stderr and "Dockerfile:2" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (user_dir / "out").exists()


def test_the_namespace_is_gone_after_the_build(busybox_ref: str, rootless_user: User, user_dir: Path) -> None:
    """Nothing of the build outlives it: no process of the user's is left, and its work directory is empty."""
    ctx = _context(user_dir, f"FROM {busybox_ref}\nRUN (sleep 30 &) && echo started\n")
    r = _user_build(rootless_user, ctx, user_dir / "out", user_dir / "kiln")
    assert r.returncode == 0, r.stderr
    # Other tests' builds may run as the same user meanwhile: only this build's processes count (its kiln dir is
    # on their command lines or in their working directories).
    left = [pid for pid in subprocess.run(["pgrep", "-u", rootless_user.name], capture_output=True,
                                          text=True).stdout.split() if _belongs_to(int(pid), user_dir)]  # fmt: skip
    assert left == [], f"processes of this build left: {left}"
    assert list((user_dir / "kiln" / "tmp").iterdir()) == []


def _belongs_to(pid: int, work: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False  # gone meanwhile
    return str(work) in cmdline or cwd.startswith(str(work))


def test_one_id_fallback_builds_and_names_each_instruction_that_lost_an_owner(
    busybox_ref: str, oneid_user: User, user_dir: Path
) -> None:
    """Without subordinate IDs: one warning for the build, one per instruction that met an owner the map lacks
    (the base image's /home/app is uid 1000's; COPY --chown=55:66); what the build wrote is root's in the image,
    the base layers are as they were."""
    (user_dir / "ctx").mkdir()
    (user_dir / "ctx" / "f").write_text("f\n")
    ctx = _context(user_dir, f"FROM {busybox_ref}\nRUN echo hi > /hi\nCOPY --chown=55:66 f /f\n")
    r = _user_build(oneid_user, ctx, user_dir / "out", user_dir / "kiln")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 3, warnings
    assert "maps one ID" in warnings[0] and "no subordinate IDs for kiln-oneid" in warnings[0]
    assert "Dockerfile:1:" in warnings[1] and "/home/app (uid 1000, gid 1000)" in warnings[1]
    assert "the base layers keep them" in warnings[1]
    assert "Dockerfile:3:" in warnings[2] and "/f (uid 55, gid 66)" in warnings[2]
    (user_dir / "flat").mkdir()
    tree = flatten_layout(user_dir / "out", "latest", user_dir / "flat")
    assert (tree["/f"].uid, tree["/f"].gid) == (0, 0)
    assert (tree["/home/app"].uid, tree["/home/app"].gid) == (1000, 1000)  # the base layer, as it was
    assert tree["/hi"].type == "file"


def test_one_id_fallback_refuses_to_run_as_another_user(busybox_ref: str, oneid_user: User, user_dir: Path) -> None:
    ctx = _context(user_dir, f"FROM {busybox_ref}\nUSER 1000\nRUN id\n")
    r = _user_build(oneid_user, ctx, user_dir / "out", user_dir / "kiln")
    assert r.returncode != 0
    [error] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "Dockerfile:3:" in error and "cannot run as uid 1000" in error and "subordinate IDs" in error
    assert "Traceback" not in r.stderr


# What a container runtime does to /proc in every pod (Docker's and Kubernetes' masked paths), in a mount
# namespace of the test's own.
MASKED_PROC = ["unshare", "--mount", "sh", "-c",
               'mount --make-rprivate / && mount --bind /dev/null /proc/keys && exec "$@"', "sh"]


def test_a_masked_proc_is_bound_where_a_fresh_one_is_refused(busybox_ref: str, rootless_user: User,
                                                             user_dir: Path) -> None:  # fmt: skip
    """With parts of /proc covered, the kernel refuses a fresh procfs to a user namespace: RUN gets kiln's /proc,
    bound (and shares kiln's PID namespace), and the build gives root's image."""
    ctx = _context(user_dir, f"FROM {busybox_ref}\nRUN test -r /proc/self/status && test -e /proc/1 && echo ok > /ok\n")
    root = _root_build(ctx, user_dir / "root-image", user_dir / "root-kiln")
    assert root.returncode == 0, root.stderr
    user = rootless_user.kiln("build", "--context", str(ctx), "--no-push", "--oci-layout-path",
                              str(user_dir / "user-image"), "--kiln-dir", str(user_dir / "user-kiln"),
                              "--insecure-pull", cwd=ctx, wrapper=MASKED_PROC)  # fmt: skip
    assert user.returncode == 0, user.stderr
    _same(user_dir / "root-image", user_dir / "user-image")


def test_a_base_layer_with_a_device_node_is_refused_naming_it(busybox_image: OciImage, rootless_user: User,
                                                             user_dir: Path) -> None:  # fmt: skip
    layout = user_dir / "base"
    shutil.copytree(busybox_image.layout, layout, symlinks=True)
    layer = user_dir / "dev.tar"
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("dev/console-copy")
        info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 5, 1, 0o600
        tar.addfile(info)
    subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:{busybox_image.tag}", str(layer)], check=True)
    ctx = _context(user_dir, "FROM base\nRUN true\n")
    r = rootless_user.kiln("build", "--context", str(ctx), "--no-push", "--kiln-dir", str(user_dir / "kiln"),
                           "--build-context", f"base=oci-layout://{layout}:{busybox_image.tag}", cwd=ctx)  # fmt: skip
    assert r.returncode != 0
    [error] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "dev/console-copy" in error and "device node (5, 1)" in error and "user namespace" in error
    assert "Traceback" not in r.stderr

