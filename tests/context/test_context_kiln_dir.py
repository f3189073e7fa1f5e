"""kiln's own work directory inside a directory context: no part of the context, whatever .dockerignore says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.context.opener import open_context
from kiln.context.sources import iter_tree, resolve_sources
from kiln.engine.cache import sources_digest
from kiln.engine.steps.copy import ContextTree
from kiln.errors import ContextError, UsageError


@pytest.fixture
def ctx_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("print()\n")
    (root / ".kiln" / "tmp" / "build-1" / "root" / "app").mkdir(parents=True)
    (root / ".kiln" / "tmp" / "build-1" / "root" / "app" / "copied.py").write_text("print()\n")
    (root / ".kiln" / "blobs").mkdir()
    os.symlink(".kiln/blobs", root / "blobs-link")
    return root


def test_the_kiln_dir_is_invisible_to_copy(ctx_dir: Path, tmp_path: Path) -> None:
    with open_context(str(ctx_dir), tmp_path / "work", kiln_dir=ctx_dir / ".kiln") as ctx:
        # A walk copies a symlink as a symlink; a named (or matched) source is followed, here into the kiln dir.
        assert list(iter_tree(ctx, ".")) == ["blobs-link", "src", "src/main.py"]
        for named in (".kiln", ".kiln/tmp", "blobs-link", ".kiln/tmp/build-1/root/app/copied.py"):
            with pytest.raises(ContextError, match="not found in build context"):
                resolve_sources(ctx, [named])
        assert [s.rel for s in resolve_sources(ctx, [".*", "*"])] == ["src"]


def test_a_dockerignore_exception_does_not_bring_it_back(ctx_dir: Path, tmp_path: Path) -> None:
    (ctx_dir / ".dockerignore").write_text("*\n!**/*.py\n!.kiln\n")
    with open_context(str(ctx_dir), tmp_path / "work", kiln_dir=ctx_dir / ".kiln") as ctx:
        assert list(iter_tree(ctx, ".")) == ["src", "src/main.py"]


def test_the_kiln_dir_named_through_a_symlink_is_hidden_too(ctx_dir: Path, tmp_path: Path) -> None:
    os.symlink(ctx_dir / ".kiln", tmp_path / "kiln-link")
    with open_context(str(ctx_dir), tmp_path / "work", kiln_dir=tmp_path / "kiln-link") as ctx:
        assert ".kiln" not in list(iter_tree(ctx, "."))


def test_what_kiln_writes_there_does_not_move_the_cache_key(ctx_dir: Path, tmp_path: Path) -> None:
    with open_context(str(ctx_dir), tmp_path / "work", kiln_dir=ctx_dir / ".kiln") as ctx:
        before = sources_digest(ContextTree(ctx), ["."])
        (ctx_dir / ".kiln" / "blobs" / "sha256-new").write_text("a new blob\n")
        assert sources_digest(ContextTree(ctx), ["."]) == before
        (ctx_dir / "src" / "main.py").write_text("print('changed')\n")
        assert sources_digest(ContextTree(ctx), ["."]) != before


def test_a_kiln_dir_outside_the_context_changes_nothing(ctx_dir: Path, tmp_path: Path) -> None:
    with open_context(str(ctx_dir), tmp_path / "work", kiln_dir=tmp_path / "kiln") as ctx:
        assert ".kiln/tmp/build-1/root/app/copied.py" in list(iter_tree(ctx, "."))


def test_the_build_work_dir_inside_the_context_is_hidden(ctx_dir: Path) -> None:
    # A context inside the kiln dir holds the build's own work directory: the stage roots.
    with open_context(str(ctx_dir), ctx_dir / ".kiln" / "tmp" / "build-1") as ctx:
        assert [p for p in iter_tree(ctx, ".") if "build-1" in p] == []


def test_the_kiln_dir_cannot_be_the_context_itself(ctx_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is the build context itself") as err:
        open_context(str(ctx_dir), tmp_path / "work", kiln_dir=ctx_dir)
    assert err.value.flag == "--kiln-dir"
