"""Property: any tree written as a layer and extracted again is the same tree, and writing is deterministic."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from layertree import describe

from kiln.layers import CompressingWriter, extract_layer, write_layer_tar

pytestmark = pytest.mark.root

# Names that stress sorting, escaping and PAX: unicode, dashes and dots sorting around "/", long names.
names = st.one_of(
    st.text(alphabet="ab-._éü文🙂 ", min_size=1, max_size=6),
    st.text(alphabet="xyz", min_size=101, max_size=140),
).filter(lambda n: n not in (".", "..") and not n.startswith(".wh."))

leaf = st.one_of(
    st.tuples(st.just("file"), st.binary(max_size=1500), st.sampled_from([0o644, 0o755, 0o4755, 0o600, 0o2750])),
    st.tuples(st.just("symlink"), st.text(alphabet="ab/.", min_size=1, max_size=12), st.just(0)),
    st.tuples(st.just("fifo"), st.just(b""), st.sampled_from([0o600, 0o644])),
    st.tuples(st.just("hardlink"), st.just(b""), st.just(0)),
)

Tree = dict[str, object]
trees = st.recursive(
    st.dictionaries(names, leaf, max_size=4),
    lambda children: st.dictionaries(
        names, st.one_of(leaf, st.tuples(st.just("dir"), children, st.sampled_from([0o755, 0o700, 0o1777]))),
        max_size=4,
    ),
    max_leaves=20,
)


def build(root: Path, tree: dict[str, tuple[str, object, int]], files: list[Path], uid: list[int]) -> None:
    for name, (kind, payload, mode) in sorted(tree.items()):
        path = root / name
        uid[0] = (uid[0] * 7 + 3) % 70000
        if kind == "dir":
            path.mkdir()
            build(path, payload, files, uid)  # type: ignore[arg-type]
        elif kind == "file":
            path.write_bytes(payload)  # type: ignore[arg-type]
            files.append(path)
        elif kind == "symlink":
            path.symlink_to(payload)  # type: ignore[arg-type]
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "hardlink":
            if not files:
                continue
            os.link(files[len(files) // 2], path)
            continue
        os.chown(path, uid[0], uid[0] // 2, follow_symlinks=False)
        if kind != "symlink":
            os.chmod(path, mode)
        os.utime(path, (0, 1_000_000 + uid[0]), follow_symlinks=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, compression=st.sampled_from(["gzip", "zstd", "none"]))
def test_random_trees_round_trip(tree: dict[str, tuple[str, object, int]], compression: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "src"), Path(tmp, "dst")
        src.mkdir()
        dst.mkdir()
        build(src, tree, [], [1])
        # Directory mtimes after their contents exist.
        for dirpath, _, _ in os.walk(src, topdown=False):
            if dirpath != str(src):
                os.utime(dirpath, (0, 1_234_567))
        paths = [os.path.relpath(os.path.join(d, n), src) for d, ds, fs in os.walk(src) for n in ds + fs]
        blobs = []
        for order in (paths, list(reversed(paths))):
            buf = io.BytesIO()
            with CompressingWriter(buf, compression) as w:  # type: ignore[arg-type]
                write_layer_tar(src, order, [], w)
            blobs.append(buf.getvalue())
        assert blobs[0] == blobs[1]
        stats = extract_layer(io.BytesIO(blobs[0]), dst)
        assert stats.diff_id == w.digests.diff_id
        expected = describe(src)
        assert describe(dst) == expected
        assert stats.entries == len(expected)
