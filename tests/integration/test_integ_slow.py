"""Slow whole builds: a RUN writing 20,000 files on the Debian base, snapshotted by the overlay snapshotter
and by the walking one, and the README demo (scripts/demo.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from integ_helpers import REPO, Kiln, layer_count, write_context

from support.images import open_layer, read_manifest, skopeo_inspect

pytestmark = [pytest.mark.root, pytest.mark.slow]

DIRS, PER_DIR, SIZE = 20, 1000, 10 * 1024

# perl is in Debian's minbase (perl-base): one process writes every file, so the RUN itself is quick and the
# snapshot is what takes time. Each file starts with its own name, padded to SIZE bytes.
BIG_RUN = (
    "FROM debian\n"
    f'RUN perl -e \'for my $d (0..{DIRS - 1}) {{ mkdir "/big/$d" or mkdir("/big") && mkdir "/big/$d" or die;'
    f' for my $i (0..{PER_DIR - 1}) {{ my $n = "big/$d/$i"; open(my $f, ">", "/$n") or die; '
    f'print $f $n . ("x" x ({SIZE} - length($n))); close($f) or die; }} }}\'\n'
)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_twenty_thousand_files_are_snapshotted_exactly(kiln_deb: Kiln, tmp_path: Path, mode: str) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": BIG_RUN})
    out = kiln_deb.build(ctx, f"--snapshot-mode={mode}", timeout=1800)
    print(f"\n20,000 x 10 KiB files on debian, --snapshot-mode={mode}: kiln build took {out.seconds:.1f}s")
    out.ok()
    base = layer_count(kiln_deb.contexts["debian"])
    layers = read_manifest(out.layout, out.tag)["layers"]
    assert len(layers) == base + 1
    expected = {f"big/{d}/{i}" for d in range(DIRS) for i in range(PER_DIR)}
    seen: set[str] = set()
    others: list[str] = []
    with open_layer(out.layout, layers[-1]) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            name = info.name.removeprefix("./").strip("/")
            if name in expected:
                assert info.isfile() and info.size == SIZE, (name, info.type, info.size)
                f = tar.extractfile(info)
                assert f is not None
                head = f.read(len(name))
                assert head == name.encode(), (name, head)
                seen.add(name)
            elif name not in ("big", "") and not (name.startswith("big/") and name.count("/") == 1):
                others.append(name)
    missing = expected - seen
    assert not missing, f"{len(missing)} files missing from the layer, e.g. {sorted(missing)[:5]}"
    assert not others, f"unexpected entries in the layer: {others[:20]}"


def test_readme_demo(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo-out"
    env = dict(os.environ, KILN_DIR=str(tmp_path / "kiln"))
    proc = subprocess.run(["bash", "scripts/demo.sh", str(out_dir)], cwd=REPO, env=env, capture_output=True,
                          timeout=900, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode()[-3000:] + proc.stderr.decode()[-3000:]
    layout = out_dir / "scratch-busybox"
    index = json.loads((layout / "index.json").read_text())
    tags = [m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    ref = f"oci:{layout}" + (f":{tags[0]}" if tags and tags[0] else "")
    inspected = skopeo_inspect(ref)
    config = inspected.config["config"]
    assert config["Cmd"] == ["/bin/busybox", "sh"]
    assert config["User"] == "1000:1000" and config["WorkingDir"] == "/home/app"
    assert len(inspected.manifest["layers"]) == 4  # three COPY and the WORKDIR that made /home/app
    assert skopeo_inspect(f"docker-archive:{out_dir / 'scratch-busybox.tar'}").config["config"]["Cmd"] == [
        "/bin/busybox", "sh",
    ]  # fmt: skip
    assert not os.listdir(tmp_path / "kiln" / "tmp")
