"""A finding of the hostile-archive generator (tests/security/test_hostile_archives.py): an old GNU sparse
file whose real size (2**70) no off_t holds made ftruncate raise OverflowError, a traceback instead of a
one-line error naming the entry. Kept as a fixed case, in both extraction modes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hostile_tars import Host, OldSparse

from kiln.errors import ImageFormatError
from kiln.layers import extract_layer

pytestmark = pytest.mark.root


@pytest.mark.parametrize("mode", ["apply", "overlay", "archive"])
def test_a_sparse_file_larger_than_off_t_is_a_one_line_error(tmp_path: Path, mode: str) -> None:
    blob = OldSparse(name="d/sparse", structs=(), realsize=2**70, data=b"").render(Host({}, 0))
    with pytest.raises(ImageFormatError, match=r"^layer: d/sparse: sparse file size \d+ out of range$"):
        extract_layer(io.BytesIO(blob), tmp_path / "root", mode=mode)  # type: ignore[arg-type]
    assert not (tmp_path / "root/d/sparse").exists()
