"""Hostile archives against kiln's layer extractor: generated ones (hostile_tars) and the findings they led to.

Every archive is extracted in both modes (flat apply onto a root holding a lower layer, overlay layer directory)
onto tmp_path/box/root, beside a sentinel tree (tmp_path/box/outside) and with a sentinel directory elsewhere
under /tmp. The property (hostile_tars.check_extraction): the extraction succeeds or raises a one-line KilnError,
nothing outside the root changes, no device node appears outside the root (kiln creates the device nodes an
image carries, as root, on purpose: they stay inside the root), and nothing hangs.

The long run of the same property: tests/security/fuzz_archives.py (results in docs/security-fuzzing.md).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_tars import (
    Bomb,
    Extended,
    HostileTar,
    HostPath,
    Member,
    MiB,
    OldSparse,
    PaxSparse,
    Sandbox,
    bomb_case,
    bombs,
    check_extraction,
    header,
    hostile_case,
    hostile_tars,
    pax_record,
    remove_tree,
    sentinel_dir,
    walk,
)
from hypothesis import HealthCheck, example, given, settings

from kiln.errors import ImageFormatError, KilnError, UnsafePathError
from kiln.layers import ExtractError, extract_layer
from kiln.layers.extract import member_names

pytestmark = pytest.mark.root

_HEALTH = [
    HealthCheck.function_scoped_fixture,  # the sandbox is reset for every example
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.large_base_example,
]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    sentinel = sentinel_dir()
    try:
        yield Sandbox(tmp_path, sentinel)
    finally:
        remove_tree(str(tmp_path / "box"))  # (pytest's own clean-up recurses: trees here can be deep)
        remove_tree(str(sentinel))


# About 250 archives x 2 modes: 15-50 s on 2 busy cores. CI derandomizes (tests/conftest.py's "ci" profile).
@settings(max_examples=250, deadline=None, suppress_health_check=_HEALTH)
@given(spec=hostile_tars())
def test_generated_hostile_archives(spec: HostileTar, sandbox: Sandbox) -> None:
    findings = hostile_case(spec, sandbox)
    assert not findings, "\n".join(findings)


# Each bomb expands to up to 200 MB; the extraction must stream it (48 MiB of Python allocations at most).
@settings(max_examples=3, deadline=None, suppress_health_check=_HEALTH)
@given(bomb=bombs)
@example(bomb=Bomb("file", 200 * MiB))
@example(bomb=Bomb("pax", 200 * MiB))
@example(bomb=Bomb("gnu-longname", 200 * MiB, "zstd"))
@example(bomb=Bomb("skipped", 200 * MiB, "zstd"))
def test_compression_bombs_are_streamed(bomb: Bomb, sandbox: Sandbox) -> None:
    findings = bomb_case(bomb, sandbox)
    assert not findings, "\n".join(findings)


# --- findings of the generator, one hand-written case each ---------------------------------------------


def _expect(spec: HostileTar | bytes, sandbox: Sandbox, error: type[KilnError] | None, match: str = "") -> None:
    """The property holds in both modes, and each mode ends as expected (success, or ``error`` matching)."""
    blob = spec if isinstance(spec, bytes) else spec.render(sandbox.host)
    for mode in ("apply", "overlay"):
        raised: list[KilnError] = []
        assert check_extraction(blob, sandbox, mode, errors=raised) == []
        if error is None:
            assert raised == []
        else:
            assert len(raised) == 1 and isinstance(raised[0], error), raised
            assert re.search(match, str(raised[0])), str(raised[0])


def _file(name: str = "f", data: bytes = b"data") -> Member:
    return Member("file", name, data=data)


def _chain(flag: bytes, body: bytes, n: int) -> HostileTar:
    return HostileTar((*[Extended(flag, body)] * n, _file()))


# Each of these broke the property before the fix (the comment says how); now each is a one-line ImageFormatError.
FINDINGS = [
    # Hang: tarfile searches PAX headers with a regex that takes quadratic time on a run of digits (CVE-2024-6232,
    # fixed in Python 3.11.10): 300 KB of digits took minutes.
    pytest.param(HostileTar((Extended(b"x", b"1" * 300_000), _file())), "PAX record length", id="pax-digits-redos"),
    # Hang: a whiteout (whose data is never read) claiming 2**70 bytes: tarfile skipped it 10 KB at a time.
    pytest.param(HostileTar((Member("file", ".wh.x", size_lie=2**70),)), "end of data", id="huge-size-skipped"),
    # ValueError: a PAX record length of 5000 digits (over Python's int-from-str limit).
    pytest.param(HostileTar((Extended(b"x", b"1" * 5000 + b" path=x\n"), _file())), "PAX", id="pax-long-length"),
    # ValueError: a GNU sparse 0.1 map that is not numbers.
    pytest.param(
        HostileTar((PaxSparse("0.1", "s", ((0, 5),), 10, b"x" * 5, map_text=b"1,x,3"),)),
        "sparse",
        id="sparse-0.1-garbage",
    ),
    # ValueError: a GNU sparse 1.0 map cut short.
    pytest.param(
        HostileTar((PaxSparse("1.0", "s", ((0, 5),), 10, b"", map_text=b"2\n0\n"),), ending="none"),
        "sparse",
        id="sparse-1.0-truncated",
    ),
    # IndexError: an old GNU sparse header announcing an extension block the archive does not have.
    pytest.param(
        header(b"s", tarfile.GNUTYPE_SPARSE, size=0, gnu=b"\0" * 137 + b"\1" + b"\0" * 17),
        "end of data",
        id="old-sparse-missing-extension",
    ),
    # RecursionError: tarfile reads each extended header by recursing into the next one.
    pytest.param(_chain(b"x", pax_record(b"comment", b"c"), 1200), "too many extended", id="pax-chain"),
    pytest.param(_chain(b"L", b"chained\0", 1200), "too many extended", id="gnu-longname-chain"),
    # OverflowError from os.chown, os.makedev, os.utime; ValueError from round(nan).
    pytest.param(HostileTar((Member("file", "f", uid=-2),)), "uid -2 out of range", id="uid-negative"),
    pytest.param(HostileTar((Member("dir", "d", gid=2**32),)), "gid 4294967296 out of range", id="gid-2**32"),
    pytest.param(HostileTar((Member("chr", "c", dev=(2**32, 0)),)), "device number", id="devmajor-2**32"),
    pytest.param(HostileTar((Member("fifo", "p", mtime=2**80),)), "mtime", id="mtime-2**80"),
    pytest.param(HostileTar((Member("file", "f", pax=((b"mtime", b"nan"),)),)), "mtime", id="mtime-nan"),
    pytest.param(HostileTar((Member("file", "f", pax=((b"uid", b"-2"),)),)), "uid", id="pax-uid-negative"),
    # ValueError ("embedded null byte") from os.lstat, os.symlink, os.setxattr.
    pytest.param(HostileTar((Member("file", "f", pax=((b"path", b"a\0b"),)),)), "NUL", id="nul-in-path"),
    pytest.param(HostileTar((Member("symlink", "l", pax=((b"linkpath", b"a\0b"),)),)), "NUL", id="nul-in-link"),
    pytest.param(
        HostileTar((Member("file", "f", pax=((b"SCHILY.xattr.user.a\0b", b"v"),)),)), "key", id="nul-in-xattr-name"
    ),
]


SPARSE_RECORDS = ((b"GNU.sparse.size", b"1"), (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"0,1"))


@pytest.mark.parametrize(("spec", "match"), FINDINGS)
def test_findings_are_one_line_errors(spec: HostileTar | bytes, match: str, sandbox: Sandbox) -> None:
    started = time.monotonic()
    _expect(spec, sandbox, ImageFormatError, match)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        # Sparse maps Go's archive/tar refuses too (overlapping, backwards, past the file's size, not using the
        # data that follows): kiln now writes the pieces itself, at the offsets the map gives.
        pytest.param(
            HostileTar((OldSparse("s", ((100, 5), (0, 5)), 200, b"x" * 10),)), "sparse", id="sparse-backwards"
        ),
        pytest.param(HostileTar((OldSparse("s", ((0, 50),), 10, b"x" * 50),)), "sparse", id="sparse-past-size"),
        pytest.param(HostileTar((OldSparse("s", ((0, 5),), 10, b"x" * 50),)), "sparse", id="sparse-unused-data"),
        pytest.param(HostileTar((Member("dir", "d", pax=SPARSE_RECORDS),)), "without data", id="sparse-dir"),
        # Limits: extended headers over 1 MiB (as in Go), and device numbers no mknod takes.
        pytest.param(HostileTar((Extended(b"x", b"", size_lie=2**40),)), "extended header of", id="pax-claims-1TB"),
        pytest.param(HostileTar((Extended(b"L", b"x" * (MiB + 1)), _file())), "extended header of", id="longname-1MiB"),
        pytest.param(HostileTar((Member("chr", "c", dev=(0, -1)),)), "device number", id="devminor-negative"),
    ],
)
def test_what_is_refused_now(spec: HostileTar, match: str, sandbox: Sandbox) -> None:
    _expect(spec, sandbox, ImageFormatError, match)


@pytest.mark.parametrize(
    "name",
    ["a\nb/../../../x", "x\r\n/../../../y", "line\u2028sep/../../x", "\x1c/../../z", "\udcff\n/../../w"],
)
def test_names_in_messages_keep_them_one_line(name: str, sandbox: Sandbox) -> None:
    """Names with line breaks (\\n, \\r, U+2028, \\x1c: str.splitlines breaks on all) made multi-line messages."""
    blob = HostileTar((_file(name),)).render(sandbox.host)
    for mode in ("apply", "overlay"):
        sandbox.reset(mode)
        with pytest.raises(UnsafePathError) as raised:
            extract_layer(io.BytesIO(blob), sandbox.root, mode=mode)  # type: ignore[arg-type]
        assert len(str(raised.value).splitlines()) == 1, str(raised.value)


def test_long_names_in_messages_are_shortened(sandbox: Sandbox) -> None:
    blob = HostileTar((_file("../" + "x" * 200_000),)).render(sandbox.host)
    sandbox.reset("apply")
    with pytest.raises(UnsafePathError) as raised:
        extract_layer(io.BytesIO(blob), sandbox.root)  # type: ignore[arg-type]
    assert len(str(raised.value)) < 5000


@pytest.mark.parametrize(
    "spec",
    [
        # PAX records as GNU tar and Go write them, some huge: accepted (and linear to parse).
        pytest.param(HostileTar((Member("file", "f", pax=((b"comment", b"1" * 300_000),)),)), id="pax-300KB-digits"),
        pytest.param(
            HostileTar((Extended(b"x", pax_record(b"hdrcharset", b"\xff\xfe")), _file())), id="hdrcharset-not-utf8"
        ),
        pytest.param(HostileTar((Extended(b"g", pax_record(b"comment", b"global")), _file())), id="global-header"),
        # ValueError: GNU.sparse.size that is not a number (and no sparse map: ignored, as Go does).
        pytest.param(
            HostileTar((Extended(b"x", pax_record(b"GNU.sparse.size", b"nope")), _file())), id="sparse-size-garbage"
        ),
        # RecursionError: shutil.rmtree, and pruning an opaque directory, recursed once per level.
        pytest.param(HostileTar((_file("d/" * 1050 + "f"), _file("d"))), id="deep-tree-replaced"),
        pytest.param(HostileTar((_file("d/" * 1050 + "f"), _file(".wh..wh..opq"))), id="deep-tree-opaque"),
        # The sentinel outside, through absolute and climbing links: lands inside the root, or is refused.
        pytest.param(
            HostileTar((Member("symlink", "s", link=HostPath("sentinel")), _file("s/victim"))), id="symlink-to-sentinel"
        ),
    ],
)
def test_findings_that_now_extract(spec: HostileTar, sandbox: Sandbox) -> None:
    _expect(spec, sandbox, None)


def test_gnu_sparse_formats_extract_with_holes(sandbox: Sandbox) -> None:
    """Every GNU sparse format gives the file its data where the map says, holes elsewhere."""
    expected = b"\0" * 100 + b"hello" + b"\0" * 995 + b"world" + b"\0" * 95
    segments = ((100, 5), (1100, 5))
    for op in [
        OldSparse("s", segments, 1200, b"helloworld"),
        OldSparse("s", segments * 1 + tuple((1200 + 10 * i, 1) for i in range(30)), 1600, b"helloworld" + b"z" * 30),
        PaxSparse("0.0", "s", segments, 1200, b"helloworld"),
        PaxSparse("0.1", "s", segments, 1200, b"helloworld"),
        PaxSparse("1.0", "s", segments, 1200, b"helloworld"),
    ]:
        blob = HostileTar((op,)).render(sandbox.host)
        sandbox.reset("overlay")
        extract_layer(io.BytesIO(blob), sandbox.root, mode="overlay")  # type: ignore[arg-type]
        data = (sandbox.root / "s").read_bytes()
        if isinstance(op, OldSparse) and len(op.structs) > 2:
            assert data[:1200] == expected and len(data) == 1600, op
        else:
            assert data == expected, op


def test_terabyte_of_holes_is_not_written(sandbox: Sandbox) -> None:
    """A 1 KB entry describing a 1 TB sparse file: tarfile handed the holes over as zeros, 1 TB of writes."""
    blob = HostileTar((OldSparse("holes", ((2**40 - 1, 1),), 2**40, b"z"),)).render(sandbox.host)
    for mode in ("apply", "overlay"):
        assert check_extraction(blob, sandbox, mode, timeout=10) == []
        sandbox.reset(mode)
        extract_layer(io.BytesIO(blob), sandbox.root, mode=mode)  # type: ignore[arg-type]
        st = (sandbox.root / "holes").stat()
        assert st.st_size == 2**40 and st.st_blocks * 512 < MiB
        with open(sandbox.root / "holes", "rb") as f:
            f.seek(2**40 - 1)
            assert f.read() == b"z"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(HostileTar((Extended(b"L", b"a/" * 150_000), _file())), id="gnu-longname"),
        pytest.param(HostileTar((_file("a/" * 150_000 + "f"),)), id="pax-path"),
    ],
)
def test_paths_longer_than_path_max_are_refused(spec: HostileTar, sandbox: Sandbox) -> None:
    """Found by the first long run, after directories were resolved through fds: no path limit any more, so a
    300 KB name made 150,000 nested directories (minutes to make, more to remove). Refused at PATH_MAX again."""
    started = time.monotonic()
    _expect(spec, sandbox, ExtractError, "too long")
    assert time.monotonic() - started < 20
    assert sum(1 for _ in walk(str(sandbox.root))) < 2100


def test_deep_paths_are_resolved_in_linear_time(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """One 4 KB entry 2000 directories deep took 10-17 s: every step re-resolved the whole path from the root
    (three system calls per directory, on paths of up to 4000 bytes). Now each step is one call on one name."""
    spec = HostileTar((_file("d/" * 600 + "f"), _file("d/" * 600 + "g"), _file("d/" * 300 + "h")))
    blob = spec.render(sandbox.host)
    sandbox.reset("overlay")
    passed = [0]

    def counting(fn: Callable[..., object]) -> Callable[..., object]:
        def wrapper(path: object, *args: object, **kwargs: object) -> object:
            passed[0] += len(os.fsencode(path)) if isinstance(path, (str, bytes)) else 0
            return fn(path, *args, **kwargs)

        return wrapper

    for name in ("lstat", "mkdir", "chmod", "open", "readlink"):
        monkeypatch.setattr(os, name, counting(getattr(os, name)))
    extract_layer(io.BytesIO(blob), sandbox.root, mode="overlay")  # type: ignore[arg-type]
    monkeypatch.undo()
    # Linear: a few passes over the ~1200-byte path per entry (was three per directory: ~1 MB per entry).
    assert passed[0] < 100_000, passed[0]


def test_member_names_reads_archives_as_the_extractor_does(sandbox: Sandbox) -> None:
    """For callers that list an archive besides extracting it (ADD): tarfile's reader hangs on this one."""
    blob = HostileTar(
        (
            Member("file", "f", pax=((b"comment", b"1" * 300_000),)),
            Extended(b"g", pax_record(b"path", b"renamed")),
            _file("d/" * 3 + "g"),
        )
    ).render(sandbox.host)
    started = time.monotonic()
    assert member_names(io.BytesIO(blob)) == ["f", "d/d/d/g"]
    with pytest.raises(ImageFormatError, match="PAX record length"):
        member_names(io.BytesIO(HostileTar((Extended(b"x", b"1" * 300_000), _file())).render(sandbox.host)))
    assert time.monotonic() - started < 5
