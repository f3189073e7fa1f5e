"""The ID map an ordinary user's build gets, from /etc/subuid-style files (kiln.rootless)."""

from __future__ import annotations

from pathlib import Path

from kiln.rootless import IdRange, map_arguments, subordinate_ranges


def test_ranges_by_name_or_number_in_file_order(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("other:100000:65536\nalice:200000:65536\n# a comment\n1001:300000:1000\nalice:bad:1\n"
                 "alice:400000:0\nalice:500000:10\n")  # fmt: skip
    assert subordinate_ranges(f, "alice", 1001) == [IdRange(200000, 65536), IdRange(300000, 1000),
                                                    IdRange(500000, 10)]  # fmt: skip
    assert subordinate_ranges(f, "bob", 1002) == []
    assert subordinate_ranges(tmp_path / "missing", "alice", 1001) == []


def test_the_user_is_root_and_the_ranges_follow_from_one() -> None:
    assert map_arguments(1001, [IdRange(200000, 65536), IdRange(500000, 10)]) == [
        "0", "1001", "1", "1", "200000", "65536", "65537", "500000", "10"]  # fmt: skip
    assert map_arguments(1001, []) == ["0", "1001", "1"]
