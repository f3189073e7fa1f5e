"""Session fixtures shared by every kiln test: registries, base images, buildah.

Under pytest-xdist each worker has its own session, so each worker starts its own registries and buildah
storage (cheap); the base image layouts are built once per cache directory, guarded by a file lock.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiln.binfmt import Emulation

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# Make `support` importable whatever pytest's import mode is.
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from hypothesis import settings  # noqa: E402

# CI runs the property tests with fixed examples and no time limit: a red CI from a newly drawn example or a
# loaded machine would block everything; exploring new examples is for developers' runs.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from support.base_images import (  # noqa: E402
    OciImage,
    busybox_arm64_image,
    busybox_image,
    debian_arm64_image,
    debian_image,
    default_cache_dir,
    push,
)
from support.binfmt import host_view as binfmt_host_view  # noqa: E402
from support.buildah import Buildah  # noqa: E402
from support.registry import Credentials, Registry, RegistryFactory  # noqa: E402
from support.registry import registry_factory as start_registries  # noqa: E402

# Fixtures that imply a marker: lets `-m "not slow"` skip every test that needs the debian base.
_IMPLIED_MARKERS = {
    "debian_image": "slow", "debian_ref": "slow", "debian_arm64_image": "slow",
    "registry": "registry", "tls_registry": "registry", "auth_registry": "registry",
    "registry_factory": "registry", "busybox_ref": "registry",
    "buildah": "buildah", "buildah_build": "buildah",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marker in _IMPLIED_MARKERS.items():
            if fixture in names and marker not in item.keywords:
                item.add_marker(getattr(pytest.mark, marker))


_HOST_SYSCTLS = ("vm/swappiness", "kernel/core_pattern", "kernel/hostname", "net/ipv4/ip_forward",
                 "kernel/modprobe", "fs/file-max")


def _host_state() -> dict[str, str]:
    """What a build step that escaped would most likely change: shadow, sysctls, the block devices."""
    state = {f"/proc/sys/{name}": Path(f"/proc/sys/{name}").read_text() for name in _HOST_SYSCTLS
             if Path(f"/proc/sys/{name}").exists()}
    shadow = Path("/etc/shadow")
    if shadow.exists():
        state["/etc/shadow"] = hashlib.sha256(shadow.read_bytes()).hexdigest()
    devices = []
    for entry in sorted(os.listdir("/dev")):
        try:
            st = os.lstat(f"/dev/{entry}")
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            devices.append(f"{entry}={st.st_rdev}:{st.st_mode:o}")
    state["block devices"] = " ".join(devices)
    # Registered interpreters run every matching binary on the host; the shared arm64 lease's are left out
    # while another worker holds it (support.binfmt.host_view says why).
    state["binfmt_misc"] = binfmt_host_view()
    return state


@pytest.fixture(scope="session", autouse=True)
def host_untouched() -> Iterator[None]:
    """Checked at the end of every test session (each xdist worker): the host is as the suite found it."""
    before = _host_state()
    yield
    after = _host_state()
    assert after == before, f"the host changed during the tests: {set(after.items()) ^ set(before.items())}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def test_cache_dir() -> Path:
    """Where base image layouts are kept across runs: $KILN_TEST_CACHE or <repo>/.cache/test-images."""
    path = default_cache_dir(REPO)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for this (worker's) session."""
    return tmp_path_factory.mktemp("session")


# --- registries ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry_factory(session_dir: Path) -> Iterator[RegistryFactory]:
    """Start more registries: registry_factory.start(tls=..., credentials=..., extra_config={...})."""
    with start_registries(session_dir / "registries") as factory:
        yield factory


@pytest.fixture(scope="session")
def registry(registry_factory: RegistryFactory) -> Registry:
    """A plain-HTTP registry on 127.0.0.1 (use --tls-verify=false, or registry.tool_flags())."""
    return registry_factory.start(name="plain")


@pytest.fixture(scope="session")
def tls_registry(registry_factory: RegistryFactory) -> Registry:
    """An HTTPS registry with a certificate from a test CA (tls_registry.ca_cert, .cert_dir)."""
    return registry_factory.start(name="tls", tls=True)


@pytest.fixture(scope="session")
def auth_registry(registry_factory: RegistryFactory) -> Registry:
    """A plain-HTTP registry requiring Basic auth (auth_registry.credentials)."""
    return registry_factory.start(name="auth", credentials=Credentials("kiln", "kiln-test-password"))


# --- base images -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session", name="busybox_image")
def busybox_image_fixture(test_cache_dir: Path) -> OciImage:
    """busybox-static as an OCI layout (read-only, shared): /bin/busybox, applet links, users root/app/nobody."""
    return busybox_image(test_cache_dir)


@pytest.fixture(scope="session", name="debian_image")
def debian_image_fixture(test_cache_dir: Path) -> OciImage:
    """debootstrap --variant=minbase bookworm as an OCI layout (read-only, shared; slow the first time)."""
    return debian_image(test_cache_dir)


@pytest.fixture(scope="session")
def busybox_ref(busybox_image: OciImage, registry: Registry) -> str:
    """The busybox image pushed to `registry`: 127.0.0.1:PORT/base/busybox:latest."""
    return push(busybox_image, registry.ref("base/busybox"), registry.skopeo_flags("dest"))


@pytest.fixture(scope="session")
def debian_ref(debian_image: OciImage, registry: Registry) -> str:
    """The debian image pushed to `registry`: 127.0.0.1:PORT/base/debian:bookworm."""
    return push(debian_image, registry.ref("base/debian", "bookworm"), registry.skopeo_flags("dest"))


# --- buildah ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def buildah(session_dir: Path) -> Iterator[Buildah]:
    """buildah(*args) on storage private to this session; buildah.build(...) makes an OCI layout."""
    b = Buildah(session_dir / "buildah")
    try:
        yield b
    finally:
        b.cleanup()


@pytest.fixture(scope="session")
def buildah_build(buildah: Buildah) -> Callable[..., OciImage]:
    """buildah_build(context, dockerfile, out_layout, layers=False, build_args=None, ...) -> OciImage."""
    return buildah.build


# --- other architectures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def arm64_emulation() -> Iterator[Emulation]:
    """aarch64 binaries run on this host, RUN steps' containers included, for the session: kiln's binfmt_misc entry
    registered (and binfmt_misc mounted) unless a usable one exists; undone by the last xdist worker to finish.
    Yields kiln.binfmt's Emulation of linux/arm64 (its entry and interpreter)."""
    from support.binfmt import acquire, holder_id, release

    if os.geteuid() != 0:
        pytest.skip("registering a binfmt_misc interpreter needs root")
    holder = holder_id()
    emulation = acquire(holder)
    try:
        yield emulation
    finally:
        release(holder)


@pytest.fixture(scope="session", name="busybox_arm64_image")
def busybox_arm64_image_fixture(test_cache_dir: Path) -> OciImage:
    """busybox_image for linux/arm64 (config: arm64, variant v8; /bin/busybox from Debian's arm64 busybox-static).
    Running it needs arm64_emulation too."""
    return busybox_arm64_image(test_cache_dir)


@pytest.fixture(scope="session", name="debian_arm64_image")
def debian_arm64_image_fixture(test_cache_dir: Path, arm64_emulation: Emulation) -> OciImage:
    """debian_image for linux/arm64 (debootstrap --arch arm64 under qemu; slow the first time). Brings
    arm64_emulation, which building and running it need."""
    return debian_arm64_image(test_cache_dir)


@pytest.fixture(scope="session", name="debian_git_image")
def debian_git_image_fixture(test_cache_dir: Path, debian_image: OciImage) -> OciImage:
    """debian_image with git and openssh-client installed by apt-get (read-only, shared; slow the first time)."""
    from support.base_images import debian_git_image

    return debian_git_image(test_cache_dir, debian_image)
