"""`kiln prune` and `kiln build --cleanup` on kiln dirs filled by real builds, with builds running beside them.

A build that must be caught in the middle waits in a RUN for a file to appear in its context (bound read-only,
so the RUN sees it appear); it says it is waiting by writing into a cache mount, whose directory the test sees.
What remains is read with os.listdir and the OCI layouts the builds wrote, never through kiln's own code.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from integ_helpers import KILN, Kiln, Outcome, write_context

from support.base_images import OciImage, push
from support.images import read_layer_file
from support.registry import Registry

pytestmark = pytest.mark.root


def prune(kiln: Kiln, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KILN), "prune", "--kiln-dir", str(kiln.kiln_dir), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def listing(directory: Path) -> set[str]:
    return set(os.listdir(directory)) if directory.is_dir() else set()


def layers(kiln: Kiln) -> set[str]:
    return listing(kiln.kiln_dir / "layers" / "sha256")


def blobs(kiln: Kiln) -> set[str]:
    return listing(kiln.kiln_dir / "blobs" / "sha256")


def mounts(kiln: Kiln) -> set[str]:
    return {n for n in listing(kiln.kiln_dir / "cache-mounts") if not n.endswith((".use", ".lock"))}


def image_blobs(outcome: Outcome) -> set[str]:
    """Every blob of the image a build wrote (manifest, config, layers), as hex digests."""
    index = json.loads((outcome.layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((outcome.layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    digests = [digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    return {d.split(":")[1] for d in digests}


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, tuple[int, int]]:
    """`kind: removed N, kept K, freed B bytes ...` lines as {kind: (N, B)}."""
    found: dict[str, tuple[int, int]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(" ") or ": " not in line:
            continue
        kind, _, rest = line.partition(": ")
        words = rest.replace(",", "").split()
        if len(words) > 6 and words[0] in ("removed", "would"):
            n = int(words[1] if words[0] == "removed" else words[2])
            freed = int(words[words.index("bytes") - 1])
            found[kind] = (n, freed)
    return found


def du(*paths: Path) -> int:
    """Bytes allocated, hard links counted once (GNU du)."""
    out = subprocess.run(["du", "-s", "-c", "-B1", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def dockerfile(name: str, size_kb: int = 4) -> str:
    """A build of its own: one RUN layer of size_kb KiB of random bytes, and a cache mount of its own."""
    return (
        "FROM busybox\n"
        f"RUN --mount=type=cache,id={name},target=/cache "
        f"head -c {size_kb * 1024} /dev/urandom > /{name}.bin && echo {name} > /cache/{name}\n"
    )


def build(kiln: Kiln, tmp_path: Path, name: str, *flags: str, size_kb: int = 4) -> Outcome:
    ctx = write_context(tmp_path / f"ctx-{name}", {"Dockerfile": dockerfile(name, size_kb)})
    return kiln.build(ctx, *flags).ok()


def test_prune_needs_to_be_told_what_to_remove(kiln_bb: Kiln, tmp_path: Path) -> None:
    build(kiln_bb, tmp_path, "a")
    before = (layers(kiln_bb), blobs(kiln_bb), mounts(kiln_bb))
    for args, message in (
        ((), "say what to remove"),
        (("--filter", "until=soon"), "invalid duration"),
        (("--filter", "id=abc"), "until=DURATION"),
        (("--keep-storage", "lots"), "not a size"),
        (("--all", "--cache-repo", "oci:/nonexistent/cache"), "not a directory"),
        (("--all", "--cache-repo", "127.0.0.1:1/repo:tag"), "not a repository"),
    ):
        proc = prune(kiln_bb, *args)
        assert proc.returncode == 2, (args, proc)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc
    proc = subprocess.run([str(KILN), "prune", "--all", "--kiln-dir", str(tmp_path / "ctx-a")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2 and "not a kiln directory" in proc.stderr
    assert listing(tmp_path / "ctx-a") == {"Dockerfile"}  # nothing created there
    assert (layers(kiln_bb), blobs(kiln_bb), mounts(kiln_bb)) == before


def test_dry_run_lists_and_removes_nothing(kiln_bb: Kiln, tmp_path: Path) -> None:
    build(kiln_bb, tmp_path, "a")
    before = (layers(kiln_bb), blobs(kiln_bb), mounts(kiln_bb), du(kiln_bb.kiln_dir))
    proc = prune(kiln_bb, "--all", "--dry-run")
    assert proc.returncode == 0, proc
    assert (layers(kiln_bb), blobs(kiln_bb), mounts(kiln_bb), du(kiln_bb.kiln_dir)) == before
    got = summary(proc)
    assert got["unpacked layers"][0] == len(before[0]) and got["blobs"][0] == len(before[1]), proc.stdout
    assert got["cache mounts"][0] == 1 and got["cache mounts"][1] > 0
    listed = [line for line in proc.stdout.splitlines() if line.startswith("  blobs: sha256:")]
    assert len(listed) == len(before[1])
    # ... and the same without --dry-run removes all of it.
    proc = prune(kiln_bb, "--all")
    assert proc.returncode == 0, proc
    assert layers(kiln_bb) == blobs(kiln_bb) == mounts(kiln_bb) == set()
    assert summary(proc)["blobs"][0] == len(before[1])


def test_prune_by_age(kiln_bb: Kiln, tmp_path: Path) -> None:
    cache = tmp_path / "layer-cache"
    old = build(kiln_bb, tmp_path, "old", "--cache", f"--cache-repo=oci:{cache}")
    old_layers, old_entries = layers(kiln_bb), listing(cache)
    time.sleep(4)
    new = build(kiln_bb, tmp_path, "new", "--cache", f"--cache-repo=oci:{cache}")
    new_entries = listing(cache) - old_entries
    assert new_entries and old_entries - {"blobs"}
    proc = prune(kiln_bb, "--filter", "until=3s", "--cache-repo", f"oci:{cache}")
    assert proc.returncode == 0, proc
    # The new build used the base's layers and blobs again: they stay with its own; the old build's own go.
    assert image_blobs(new) <= blobs(kiln_bb)
    assert not (image_blobs(old) - image_blobs(new)) & blobs(kiln_bb)
    assert mounts(kiln_bb) == {n for n in mounts(kiln_bb) if n.endswith("-new")} != set()
    assert listing(cache) == new_entries | {"blobs"}
    assert len(layers(kiln_bb)) == len(old_layers)  # base layers + the new RUN layer (the old one went)
    got = summary(proc)
    assert got["unpacked layers"][0] == 1 and got["cache mounts"][0] == 1 and got["layer cache"][0] >= 1
    assert got["blobs"][0] == len(image_blobs(old) - image_blobs(new))
    # The cache's own blobs: only those its remaining entries name.
    named = {json.loads((cache / e).read_text()).get("digest", "").split(":")[-1] for e in new_entries}
    assert listing(cache / "blobs" / "sha256") == named - {""}
    # The next build of the new Dockerfile still works from what is left (and hits the cache).
    again = kiln_bb.build(tmp_path / "ctx-new", "--cache", f"--cache-repo=oci:{cache}").ok()
    assert again.manifest()["layers"] == new.manifest()["layers"]


def test_prune_by_size_least_recently_used_first(kiln_bb: Kiln, tmp_path: Path) -> None:
    build(kiln_bb, tmp_path, "big", size_kb=3072)
    time.sleep(1.1)
    small = build(kiln_bb, tmp_path, "small", size_kb=4)
    parts = [kiln_bb.kiln_dir / p for p in ("blobs", "layers", "cache", "cache-mounts")]
    total = du(*[p for p in parts if p.exists()])
    # Freeing 2 MiB: the big build's own layer (3 MiB unpacked, 3 MiB blob) goes first, nothing of the newer one.
    limit = total - 2 * 1024 * 1024
    proc = prune(kiln_bb, "--keep-storage", str(limit))
    assert proc.returncode == 0, proc
    assert image_blobs(small) <= blobs(kiln_bb)
    assert any(n.endswith("-small") for n in mounts(kiln_bb))
    left = du(*[p for p in parts if p.exists()])
    assert left <= limit, (left, limit, proc.stdout)
    assert left > limit - 4 * 1024 * 1024 - 100_000  # it stopped: not everything went
    freed = sum(b for _, b in summary(proc).values())
    assert abs((total - left) - freed) < 64 * 1024, (total, left, freed, proc.stdout)  # (directories' own blocks)
    # A limit above the total removes nothing; 0 removes everything unused.
    assert summary(prune(kiln_bb, "--keep-storage", "1g"))["blobs"][0] == 0
    prune(kiln_bb, "--keep-storage", "0")
    assert layers(kiln_bb) == blobs(kiln_bb) == mounts(kiln_bb) == set()


WAITING = (
    "FROM busybox\n"
    "RUN echo one > /one\n"
    "RUN --mount=type=bind,target=/ctx --mount=type=cache,id={name},target=/sig "
    "echo waiting > /sig/ready && while [ ! -e /ctx/go ]; do sleep 0.1; done && echo two > /two\n"
    "RUN cat /one /two > /three\n"
)


@contextmanager
def waiting_build(kiln: Kiln, tmp_path: Path, name: str, *flags: str) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A build started in the background, stopped in its second RUN until the context's `go` appears."""
    ctx = write_context(tmp_path / f"ctx-{name}", {"Dockerfile": WAITING.format(name=name)})
    argv = [str(KILN), "build", "--context", str(ctx), "--kiln-dir", str(kiln.kiln_dir), "--no-push",
            "--destination", "localhost/prune:test", "--oci-layout-path", str(tmp_path / f"out-{name}"),
            *[f"--build-context={n}=oci-layout://{i.layout}:{i.tag}" for n, i in kiln.contexts.items()], *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((kiln.kiln_dir / "cache-mounts").glob(f"*-{name}/ready")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the build never reached its waiting RUN"
            time.sleep(0.1)
        yield ctx, proc
    finally:
        (ctx / "go").write_text("")
        proc.wait(timeout=300)


def finish(ctx: Path, proc: subprocess.Popen[bytes], layout: Path) -> dict[str, str]:
    """Let a waiting build go on; the files its RUN steps wrote, as its image has them."""
    (ctx / "go").write_text("")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return {name: read_layer_file(layout, "test", name).decode() for name in ("one", "two", "three")}


def test_prune_all_beside_a_running_build(kiln_bb: Kiln, tmp_path: Path) -> None:
    earlier = build(kiln_bb, tmp_path, "earlier")
    earlier_own = image_blobs(earlier)
    with waiting_build(kiln_bb, tmp_path, "running") as (ctx, proc):
        in_use = layers(kiln_bb)
        blobs_before = blobs(kiln_bb)
        running_mount = {n for n in mounts(kiln_bb) if n.endswith("-running")}
        assert running_mount
        pruned = prune(kiln_bb, "--all")
        assert pruned.returncode == 0, pruned
        assert proc.poll() is None
        # What the earlier build alone used went; what the running build has mounted or reads stayed.
        assert mounts(kiln_bb) == running_mount
        kept_layers = layers(kiln_bb)
        assert summary(pruned)["unpacked layers"][0] == 1  # the earlier build's RUN layer
        assert len(kept_layers) == len(in_use) - 1
        assert blobs(kiln_bb) < blobs_before and summary(pruned)["blobs"][0] >= 3
        gone = {earlier.manifest()["config"]["digest"], earlier.manifest()["layers"][-1]["digest"]}
        assert not {d.split(":")[1] for d in gone} & blobs(kiln_bb)  # the earlier build's config and own layer
        assert earlier_own & blobs(kiln_bb)  # (its base layers: the running build uses them)
        files = finish(ctx, proc, tmp_path / "out-running")
        # Its layers survived until it ended.
        assert kept_layers <= layers(kiln_bb)
    assert files["one"] == "one\n" and files["two"] == "two\n" and files["three"] == "one\ntwo\n"
    # Now nothing is in use: everything goes.
    prune(kiln_bb, "--all")
    assert layers(kiln_bb) == blobs(kiln_bb) == mounts(kiln_bb) == set()


def test_cleanup_leaves_a_concurrent_builds_layers(kiln_bb: Kiln, tmp_path: Path) -> None:
    """Build C (--cleanup) unpacks the base and makes its first layer; build D, running beside it, uses both (the
    same step on the same base: --reproducible makes it the same layer). C's --cleanup removes the layers it made
    after D started, but none D uses, though C made them."""
    with waiting_build(kiln_bb, tmp_path, "cleaning", "--cleanup", "--reproducible") as (ctx_c, proc_c):
        c_so_far = layers(kiln_bb)  # busybox's, and C's first RUN layer
        assert len(c_so_far) >= 2
        with waiting_build(kiln_bb, tmp_path, "other", "--reproducible") as (ctx_d, proc_d):
            assert layers(kiln_bb) == c_so_far  # D found them all
            finish(ctx_c, proc_c, tmp_path / "out-cleaning")
            # C made two more layers and removed them; everything D has mounted is there.
            assert layers(kiln_bb) == c_so_far
            files = finish(ctx_d, proc_d, tmp_path / "out-other")
    assert files["three"] == "one\ntwo\n"
    after_d = layers(kiln_bb)
    assert c_so_far < after_d and len(after_d) == len(c_so_far) + 2  # D did not clean up: its layers stay
    # A --cleanup build removes the layers it made (its RUN layer), not those it found (the base).
    build(kiln_bb, tmp_path, "alone", "--cleanup")
    assert layers(kiln_bb) == after_d


def registry_tags(registry: Registry, repository: str) -> set[str]:
    status, _, body = registry.get(f"/v2/{repository}/tags/list")
    return set(json.loads(body).get("tags") or []) if status == 200 else set()


@pytest.mark.registry
def test_registry_cache_repo_pruned_by_age_and_size(kiln_bb: Kiln, tmp_path: Path, registry: Registry,
                                                    busybox_image: OciImage) -> None:
    repo = f"prune-{os.getpid()}-{int(time.time())}/cache"
    flags = ("--cache", f"--cache-repo={registry.address}/{repo}", "--insecure", "--insecure-pull")
    build(kiln_bb, tmp_path, "old", *flags)
    old_tags = registry_tags(registry, repo)
    assert old_tags
    time.sleep(4)
    build(kiln_bb, tmp_path, "new", *flags)
    new_tags = registry_tags(registry, repo) - old_tags
    assert new_tags
    reg = ("--cache-repo", f"{registry.address}/{repo}", "--insecure-registry", registry.address)
    dry = prune(kiln_bb, "--filter", "until=3s", "--dry-run", *reg)
    assert dry.returncode == 0, dry
    assert summary(dry)["registry cache"][0] == len(old_tags)
    assert registry_tags(registry, repo) == old_tags | new_tags
    proc = prune(kiln_bb, "--filter", "until=3s", *reg)
    assert proc.returncode == 0, proc
    assert registry_tags(registry, repo) == new_tags
    got = summary(proc)["registry cache"]
    assert got[0] == len(old_tags) and got[1] > 4096  # the old RUN layer's 4 KiB of random bytes, at least
    # By size: a limit of 1 byte removes them all, least recently used first; a tag that is no cache key (an
    # image someone pushed there) is not an entry and stays.
    push(busybox_image, registry.ref(repo, "not-an-entry"), registry.skopeo_flags("dest"))
    proc = prune(kiln_bb, "--keep-storage", "1", *reg)
    assert proc.returncode == 0, proc
    assert registry_tags(registry, repo) == {"not-an-entry"}
    assert summary(proc)["registry cache"][0] == len(new_tags)


def test_registry_that_is_not_there_is_a_one_line_error(kiln_bb: Kiln, tmp_path: Path) -> None:
    build(kiln_bb, tmp_path, "a")
    before = blobs(kiln_bb)
    proc = prune(kiln_bb, "--all", "--cache-repo", "127.0.0.1:9/nothing/cache", "--insecure-registry", "127.0.0.1:9")
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert blobs(kiln_bb) == before  # nothing local went either


def test_a_killed_build_pins_nothing(kiln_bb: Kiln, tmp_path: Path) -> None:
    """A build killed with SIGKILL cannot close its records; prune sees that no one holds them any more."""
    with waiting_build(kiln_bb, tmp_path, "killed") as (_, proc):
        busy = prune(kiln_bb, "--all")
        assert summary(busy)["unpacked layers"][0] == 0 and layers(kiln_bb)
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while listing(kiln_bb.kiln_dir / "tmp") and time.monotonic() < deadline:
        time.sleep(0.1)  # its reaper removes its build directory and mounts
    proc2 = prune(kiln_bb, "--all")
    assert proc2.returncode == 0, proc2
    assert layers(kiln_bb) == blobs(kiln_bb) == mounts(kiln_bb) == set()
    assert not [n for n in listing(kiln_bb.kiln_dir / "layers" / "inuse") if n.endswith(".rec")]
