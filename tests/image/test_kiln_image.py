"""kiln's image (image/Dockerfile, built by scripts/image.sh with kiln) and builds through its /kaniko/executor.

1. What independent tools (skopeo, umoci, patchelf) see in the image: its config, its files, no ELF file that
   reaches for /lib or /usr, its size.
2. Its Python starts in a chroot of the unpacked image with nothing from the host, and keeps starting when
   the root around it holds another system's libraries and OpenSSL config (what a build in place puts there).
3. Run as a pod runs it (tests/image/pod.py: root, Docker's default capabilities, no CAP_SYS_ADMIN), with
   kaniko's arguments: a build on the busybox and Debian bases pushed to the test registry equals the same
   Dockerfile built by kiln's namespaced mode on the host (`kiln diff`: files, config, layers); a second build
   in the same container works, and the container's own files (/kiln, /kaniko, /workspace) are intact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from image_helpers import (
    REPO,
    Container,
    KilnImage,
    described,
    executor_argv,
    host_build,
    kiln_diff,
    write_context,
)
from pod import DOCKER_DEFAULT_CAPS_MASK, Bind

from support.procs import run, run_text
from support.registry import Registry

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

KANIKO_EXECUTOR_UNPACKED = 80_000_000  # kaniko's executor image, unpacked (~80 MB)
CHROOT = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin") or "chroot"
OWN_TOPS = {"kiln", "kaniko", "workspace", ".kiln-in-place"}


def _elf_files(root: Path) -> list[Path]:
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink() and p.stat().st_size > 4:
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        out.append(p)
    return out


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for name in files + dirs:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def test_image_as_skopeo_and_umoci_see_it(kiln_image: KilnImage, container: Container, registry: Registry) -> None:
    # scripts/image.sh wrote one image three ways: the layout, the docker-archive, the registry.
    where = {"layout": (kiln_image.image.ref, []), "archive": (f"docker-archive:{kiln_image.tar}", []),
             "registry": (f"docker://{registry.ref('kiln/kiln')}", ["--tls-verify=false"])}  # fmt: skip
    configs = {name: run_text(["skopeo", "inspect", "--raw", "--config", *flags, ref])
               for name, (ref, flags) in where.items()}  # fmt: skip
    assert len(set(configs.values())) == 1, configs
    digests = {name: json.loads(run_text(["skopeo", "inspect", *flags, ref]))["Digest"]
               for name, (ref, flags) in where.items()}  # fmt: skip
    assert digests["layout"] == digests["registry"], digests
    inspect = json.loads(run_text(["skopeo", "inspect", "--config", kiln_image.image.ref]))
    config = inspect["config"]
    assert config["Entrypoint"] == ["/kaniko/executor"]
    assert config["WorkingDir"] == "/workspace"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == "/kiln/etc/ssl/certs/ca-certificates.crt"
    assert env["KILN_DIR"].startswith("/kiln/") and env["PATH"].split(":")[0] == "/kiln/bin"
    assert env["TMPDIR"] == "/kiln/tmp"
    assert inspect["os"] == "linux" and inspect["architecture"] == "amd64"

    root = container.rootfs
    assert set(os.listdir(root)) == OWN_TOPS, sorted(os.listdir(root))
    marker = root / ".kiln-in-place"
    assert marker.is_file() and marker.stat().st_size == 0
    assert (root / "workspace").is_dir() and not os.listdir(root / "workspace")
    assert (root / "kiln/tmp").stat().st_mode & 0o7777 == 0o1777
    assert os.access(root / "kaniko/executor", os.X_OK)
    assert (root / "kaniko/executor").read_text().startswith("#!/kiln/bin/python3")
    assert len((root / "kiln/etc/ssl/certs/ca-certificates.crt").read_text().split("BEGIN CERTIFICATE")) > 100
    # Nothing needs the host's (or a base image's) /lib or /usr: the interpreter's loader and every run path
    # are kiln's own.
    elves = _elf_files(root)
    assert len(elves) > 20 and root / "kiln/bin/python3.11" in elves, elves
    for elf in elves:
        rpath = run_text(["patchelf", "--print-rpath", elf]).strip()
        if elf.name.startswith("ld-linux"):
            continue
        assert rpath and all(p == "/kiln/lib" or p.startswith("$ORIGIN") for p in rpath.split(":")), (elf, rpath)
    # libc.so.6 names a loader only for running it as a program (it prints its version): never done here.
    interpreters = {run_text(["patchelf", "--print-interpreter", e], check=False).strip() for e in elves
                    if e.name != "libc.so.6"}  # fmt: skip
    assert interpreters - {""} == {"/kiln/lib/ld-linux-x86-64.so.2"}, interpreters
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink():
                target = os.readlink(p)
                assert not target.startswith("/") or target.startswith("/kiln/"), (p, target)
    # Trimmed, byte code compiled, and smaller than kaniko's executor.
    stdlib = root / "kiln/lib/python3.11"
    for gone in ("test", "idlelib", "tkinter", "ensurepip", "lib2to3", "config-3.11-x86_64-linux-gnu"):
        assert not (stdlib / gone).exists(), gone
    assert list((root / "kiln/lib").rglob("kiln/__pycache__/cli.cpython-311.pyc"))
    # Every module's byte code is there, hash-based and never checked (flags 0b01, PEP 552): an import never
    # finds it stale and rewrites it (the sources' times are clamped by --reproducible).
    sources = [p for p in (root / "kiln/lib").rglob("*.py")]
    assert len(sources) > 500
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-311.pyc"
        assert pyc.read_bytes()[4:8] == b"\x01\x00\x00\x00", pyc
    size = _tree_size(root)
    print(f"kiln's image unpacked: {size / 1e6:.1f} MB")
    assert size < KANIKO_EXECUTOR_UNPACKED, size


def test_image_is_reproducible(tmp_path: Path) -> None:
    """The same tree gives the same image, byte for byte (--reproducible, hash-based byte code). Built twice from
    one frozen copy of the tree (src/, image/, scripts/image.sh, with the repository's virtualenv): others may
    edit the working tree meanwhile."""
    frozen = tmp_path / "repo"
    for part in ("src", "image"):
        shutil.copytree(REPO / part, frozen / part, ignore=shutil.ignore_patterns("__pycache__"))
    (frozen / "scripts").mkdir()
    shutil.copy2(REPO / "scripts/image.sh", frozen / "scripts/image.sh")
    os.symlink(REPO / ".venv", frozen / ".venv")
    digests = []
    for i in range(2):
        layout = tmp_path / f"layout-{i}"
        proc = subprocess.run(["bash", str(frozen / "scripts/image.sh"), "--oci-layout-path", str(layout),
                               "--kiln-dir", str(tmp_path / f"kd-{i}")],
                              capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        assert proc.returncode == 0, described(proc)
        digests.append(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
    assert digests[0] == digests[1], digests


def _chroot_python(root: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROOT, str(root), "/kiln/bin/python3", "-I", "-c", code],
                          env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


CHECK = """\
import sys, ssl, zstandard, isal.isal_zlib, requests, kiln, kiln.cli, kiln.engine.engine
mods = [m.__file__ for m in (ssl, zstandard, isal.isal_zlib, requests, kiln) if getattr(m, "__file__", None)]
assert all(f.startswith("/kiln/") for f in mods), mods
assert sys.prefix == "/kiln", sys.prefix
ctx = ssl.create_default_context()
print(ctx.cert_store_stats()["x509_ca"], ssl.OPENSSL_VERSION)
"""


def test_python_starts_with_nothing_from_the_host(container: Container) -> None:
    root = container.rootfs
    proc = _chroot_python(root, {"PATH": "/kiln/bin", **{k: v for k, v in container.env.items() if "SSL" in k}}, CHECK)
    assert proc.returncode == 0, described(proc)
    count, version = proc.stdout.split(maxsplit=1)
    assert int(count) > 100 and version.startswith("OpenSSL"), proc.stdout

    # What a build in place leaves around kiln: another system's libraries where a loader looks by default, an
    # ld.so.cache naming them, an OpenSSL config. kiln's Python must not notice.
    for d in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"):
        (root / d).mkdir(parents=True)
        for lib in ("libc.so.6", "libm.so.6", "libssl.so.3", "libcrypto.so.3", "libz.so.1", "libffi.so.8"):
            (root / d / lib).write_bytes(b"\x7fELF not a library")
    (root / "lib64/ld-linux-x86-64.so.2").write_bytes(b"\x7fELF not a loader")
    (root / "etc").mkdir()
    (root / "etc/ld.so.cache").write_bytes(b"garbage")
    (root / "usr/lib/ssl").mkdir(parents=True)
    (root / "usr/lib/ssl/openssl.cnf").write_text("openssl_conf = broken\n[broken]\n.include /nonexistent\n")
    env = {"PATH": "/kiln/bin", **{k: v for k, v in container.env.items() if "SSL" in k}}
    proc = _chroot_python(root, env, CHECK)
    assert proc.returncode == 0, described(proc)
    # The control: a Python that does look there breaks (so the garbage above is where it counts).
    proc = subprocess.run([CHROOT, str(root), "/kiln/bin/python3", "-c", "import ssl"], env={
        "PATH": "/kiln/bin", "LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu"}, capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode != 0


def test_pod_has_dockers_default_capabilities(container: Container) -> None:
    """The harness itself: root without CAP_SYS_ADMIN, PID 1, the pod's environment, mounts refused."""
    proc = container.run(["/kiln/bin/python3", "-I", "-c", """
import os, ctypes
status = dict(l.split(":", 1) for l in open("/proc/self/status"))
libc = ctypes.CDLL(None, use_errno=True)
mounted = libc.mount(b"none", b"/workspace", b"tmpfs", 0, None)
print(os.getpid(), os.getuid(), status["CapEff"].strip(), status["CapBnd"].strip(), mounted, ctypes.get_errno(),
      os.environ.get("KUBERNETES_SERVICE_HOST"), os.getcwd(), sorted(os.listdir("/")) == sorted(
      ["kiln", "kaniko", "workspace", ".kiln-in-place", "proc", "dev", "sys", "etc", "var"]))
"""])  # fmt: skip
    assert proc.returncode == 0, described(proc)
    pid, uid, eff, bnd, mounted, errno, k8s, cwd, own_root = proc.stdout.split()
    assert own_root == "True", proc.stdout  # the image's root and the runtime's mount points, no host
    assert (pid, uid) == ("1", "0")
    assert int(eff, 16) == int(bnd, 16) == DOCKER_DEFAULT_CAPS_MASK
    assert (mounted, errno) == ("-1", "1")  # EPERM
    assert k8s and cwd == "/workspace"


DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ENV GREETING="hello pod" PATH=/opt/tool/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY hello.txt /data/hello.txt
COPY tool/ /opt/tool/
RUN mkdir -p /data/sub && echo one > /data/sub/a && echo gone > /data/sub/b \\
 && ln /data/sub/a /data/sub/a-hard && ln -s sub/a /data/a-sym && chmod 0640 /data/sub/a
RUN rm /data/sub/b && rm -rf /home && ln /data/hello.txt /data/hello-hard \\
 && echo "$GREETING" > /data/greeting && mkdir /data/empty
USER 1000:1000
WORKDIR /data/work
RUN id -u > uid && hello > out
LABEL org.example.case=pod
CMD ["cat", "/data/greeting"]
"""
CONTEXT = {
    "Dockerfile": DOCKERFILE,
    "hello.txt": "hello from the context\n",
    "tool/bin/hello": "#!/bin/sh\necho tool ran\n",
}


def _snapshot(root: Path, tops: tuple[str, ...]) -> dict[str, str]:
    """What /kiln (but its work directory), /kaniko and /workspace hold: path -> type, mode, owner, content."""
    out = {}
    for top in tops:
        for dirpath, dirs, files in os.walk(root / top):
            dirs[:] = [d for d in dirs if Path(dirpath, d) != root / "kiln/work"]
            for name in dirs + files:
                p = Path(dirpath) / name
                st = os.lstat(p)
                what = f"{st.st_mode:o} {st.st_uid}:{st.st_gid}"
                if p.is_symlink():
                    what += " -> " + os.readlink(p)
                elif p.is_file():
                    what += " " + hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p.relative_to(root))] = what
    return out


def _check_pushed(first: str, tmp_path: Path) -> None:
    """What the Dockerfile says, read from the pushed image by skopeo and umoci."""
    inspect = json.loads(run_text(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{first}"]))
    assert inspect["config"]["User"] == "1000:1000" and inspect["config"]["WorkingDir"] == "/data/work"
    assert inspect["config"]["Labels"]["org.example.case"] == "pod"
    unpacked = tmp_path / "pushed"
    run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{first}", f"oci:{tmp_path}/pushed-layout:x"])
    run(["umoci", "unpack", "--image", f"{tmp_path}/pushed-layout:x", str(unpacked)])
    files = unpacked / "rootfs"
    assert (files / "data/work/out").read_text() == "tool ran\n"
    assert (files / "data/work/uid").read_text() == "1000\n"
    assert (files / "data/greeting").read_text() == "hello pod\n"
    assert not (files / "data/sub/b").exists() and not (files / "home").exists()
    assert os.stat(files / "data/sub/a").st_ino == os.stat(files / "data/sub/a-hard").st_ino
    assert os.stat(files / "data/hello.txt").st_ino == os.stat(files / "data/hello-hard").st_ino
    assert os.readlink(files / "data/a-sym") == "sub/a"
    # Nothing of the container's own leaked into the image.
    for foreign in ("kiln", "kaniko", "workspace", ".kiln-in-place"):
        assert not os.path.lexists(files / foreign), foreign


def _build_in_pod(container: Container, registry: Registry, context: Path, base_ref: str, *refs: str) -> None:
    """One build per ref in one container, as a CI job runs them with the -debug image's shell."""
    argvs = [executor_argv(registry, "/workspace", ref, "--build-arg", f"BASE={base_ref}", "--cleanup")
             for ref in refs]  # fmt: skip
    if len(argvs) == 1:
        proc = container.run(argvs[0], binds=[Bind(context, "/workspace")])
    else:
        script = " && ".join(f"{shlex.join(argv)} && echo BUILT {ref}" for argv, ref in zip(argvs, refs, strict=True))
        proc = container.run(["/busybox/sh", "-c", script], binds=[Bind(context, "/workspace")])
    assert proc.returncode == 0, described(proc)
    if len(refs) > 1:
        for ref in refs:
            assert f"BUILT {ref}" in proc.stdout, described(proc)


def _assert_equals_namespaced(registry: Registry, context: Path, base_ref: str, tmp_path: Path, *refs: str) -> None:
    host = host_build(registry, context, tmp_path / "host", tmp_path / "host-kiln",
                      "--build-arg", f"BASE={base_ref}")  # fmt: skip
    for pushed in refs:
        diff = kiln_diff(pushed, f"oci-layout://{host}:built", "--layers")
        assert diff.returncode == 0, f"{pushed} differs from the namespaced build:\n" + described(diff)


@pytest.mark.parametrize("base", ["busybox", "debian"])
def test_pod_build_through_kaniko_executor_equals_namespaced_build(
    base: str, container: Container, registry: Registry, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    base_ref = request.getfixturevalue(f"{base}_ref")
    context = write_context(tmp_path / "context", CONTEXT)
    os.chmod(context / "tool/bin/hello", 0o755)
    pushed = registry.ref(f"pod/{base}", "one")
    _build_in_pod(container, registry, context, base_ref, pushed)
    _assert_equals_namespaced(registry, context, base_ref, tmp_path, pushed)
    _check_pushed(pushed, tmp_path)


def test_second_build_in_the_same_container(
    debug_container: Container, registry: Registry, busybox_ref: str, tmp_path: Path
) -> None:
    """kaniko's --cleanup use: build after build in one container (the -debug image's shell runs them, as in a
    GitLab CI job); the container's own files stay as they were."""
    container = debug_container
    context = write_context(tmp_path / "context", CONTEXT)
    os.chmod(context / "tool/bin/hello", 0o755)
    own = ("kiln", "kaniko", "workspace", "busybox")
    own_before = _snapshot(container.rootfs, own)
    assert any(k.startswith("busybox/") for k in own_before)
    first, second = registry.ref("pod/again", "first"), registry.ref("pod/again", "second")
    _build_in_pod(container, registry, context, busybox_ref, first, second)
    _assert_equals_namespaced(registry, context, busybox_ref, tmp_path, first, second)
    assert _snapshot(container.rootfs, own) == own_before
    assert (container.rootfs / ".kiln-in-place").is_file()


def test_digest_file_is_the_pods_termination_log(
    container: Container, registry: Registry, busybox_ref: str, tmp_path: Path
) -> None:
    """kaniko's Kubernetes recipe: --digest-file=/dev/termination-log, a file the kubelet bind-mounts."""
    context = write_context(tmp_path / "context", {"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo hi > /hi\n"})
    log = tmp_path / "termination-log"
    pushed = registry.ref("pod/digest", "one")
    argv = executor_argv(registry, "/workspace", pushed, "--build-arg", f"BASE={busybox_ref}",
                         "--digest-file=/dev/termination-log")  # fmt: skip
    proc = container.run(argv, binds=[Bind(context, "/workspace")], termination_log=log)
    assert proc.returncode == 0, described(proc)
    digest = json.loads(run_text(["skopeo", "inspect", "--tls-verify=false", f"docker://{pushed}"]))["Digest"]
    assert log.read_text() == digest


def test_registry_credentials_from_a_secret_at_kaniko_docker(
    container: Container, registry: Registry, auth_registry: Registry, busybox_ref: str, tmp_path: Path
) -> None:
    """The Job example's way: a docker-registry Secret mounted at /kaniko/.docker (DOCKER_CONFIG in the image)."""
    assert auth_registry.credentials is not None
    creds = auth_registry.credentials
    secret = tmp_path / "secret"
    secret.mkdir()
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    (secret / "config.json").write_text(json.dumps({"auths": {auth_registry.address: {"auth": token}}}))
    # Several layers: their first requests go out side by side, before the registry's challenge is known (each
    # gets a 401 with the same challenge, which must not be taken for refused credentials).
    runs = "".join(f"RUN echo {i} > /f{i}\n" for i in range(5))
    context = write_context(tmp_path / "context", {"Dockerfile": "ARG BASE\nFROM ${BASE}\n" + runs})
    pushed = auth_registry.ref("pod/secret", "one")
    argv = executor_argv(registry, "/workspace", pushed, "--build-arg", f"BASE={busybox_ref}",
                         "--insecure-registry", auth_registry.address)  # fmt: skip
    proc = container.run(argv, binds=[Bind(context, "/workspace"), Bind(secret, "/kaniko/.docker")])
    assert proc.returncode == 0, described(proc)
    inspect = run_text(["skopeo", "inspect", *auth_registry.tool_flags(), f"docker://{pushed}"])
    assert json.loads(inspect)["Digest"].startswith("sha256:")
    # And without the secret, the push is refused (the credentials came from the mount, nothing else).
    (secret / "config.json").write_text("{}")
    proc = container.run(argv, binds=[Bind(context, "/workspace"), Bind(secret, "/kaniko/.docker")])
    assert proc.returncode != 0, described(proc)
