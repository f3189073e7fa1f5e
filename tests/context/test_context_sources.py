"""Resolving COPY/ADD sources in a context: wildcards, missing and escaping paths, .dockerignore, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiln.context.dockerignore import DockerIgnore
from kiln.context.opener import BuildContext
from kiln.context.sources import ResolvedSource, iter_tree, resolve_sources
from kiln.errors import ContextError


def write(root: Path, rel: str, text: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    for rel in [
        "app.py",
        "lib.py",
        "README.md",
        "src/main.go",
        "src/util.go",
        "src/sub/deep.go",
        "docs/a.md",
        "docs/b.txt",
        "pkg1/go.mod",
        "pkg2/go.mod",
        "pkg3/other",
        "[x]",
    ]:
        write(root, rel, rel)
    os.symlink("src", root / "srclink")  # to a directory inside
    os.symlink("app.py", root / "applink")  # to a file inside
    os.symlink("../outside", root / "escape")  # out of the context
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("missing-target", root / "dangling")
    os.symlink("../app.py", root / "src" / "up")  # inside a directory, to a file inside
    (tmp_path / "outside").write_text("secret")
    return root


def ctx_of(root: Path, ignore: str = "") -> BuildContext:
    return BuildContext(root=root, ignore=DockerIgnore.parse(ignore), name=str(root))


def rels(sources: list[ResolvedSource]) -> list[str]:
    return [s.rel for s in sources]


def test_plain_file_and_directory(root: Path) -> None:
    ctx = ctx_of(root)
    file, directory = resolve_sources(ctx, ["app.py", "src"])
    assert file == ResolvedSource("app.py", root / "app.py", False)
    assert directory == ResolvedSource("src", root / "src", True)


def test_sources_are_cleaned_and_rooted(root: Path) -> None:
    ctx = ctx_of(root)
    assert rels(resolve_sources(ctx, ["/app.py", "./src/../lib.py", "src//main.go/", "/../app.py"])) == [
        "app.py",
        "lib.py",
        "src/main.go",
        "app.py",
    ]
    assert resolve_sources(ctx, ["."]) == [ResolvedSource(".", root, True)]
    assert resolve_sources(ctx, ["/"]) == [ResolvedSource(".", root, True)]


def test_wildcards_expand_sorted(root: Path) -> None:
    ctx = ctx_of(root)
    assert rels(resolve_sources(ctx, ["*.py"])) == ["app.py", "lib.py"]
    assert rels(resolve_sources(ctx, ["src/*.go"])) == ["src/main.go", "src/util.go"]
    assert rels(resolve_sources(ctx, ["pkg?/go.mod"])) == ["pkg1/go.mod", "pkg2/go.mod"]
    assert rels(resolve_sources(ctx, ["pkg[13]"])) == ["pkg1", "pkg3"]
    assert rels(resolve_sources(ctx, ["*/*.md"])) == ["docs/a.md"]
    # * does not cross directories
    assert "src/sub/deep.go" not in rels(resolve_sources(ctx, ["src/*"]))
    # a bracket is matched through a class; with only escapes, BuildKit sees no wildcard and takes the
    # name literally (backslash included)
    assert rels(resolve_sources(ctx, ["[[]x]"])) == ["[x]"]
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(ctx, ["\\[x]"])


def test_wildcard_dir_matches_are_directories(root: Path) -> None:
    sources = resolve_sources(ctx_of(root), ["pkg*"])
    assert [(s.rel, s.is_dir) for s in sources] == [("pkg1", True), ("pkg2", True), ("pkg3", True)]


def test_empty_wildcard_is_nothing_as_in_buildkit(root: Path) -> None:
    ctx = ctx_of(root)
    assert resolve_sources(ctx, ["*.rs"]) == []
    assert rels(resolve_sources(ctx, ["nomatch.*", "app.py"])) == ["app.py"]


def test_empty_wildcard_is_an_error_when_asked(root: Path) -> None:
    with pytest.raises(ContextError, match=r"\*\.rs: no source files were specified"):
        resolve_sources(ctx_of(root), ["*.rs"], allow_empty_wildcard=False)


def test_wildcard_in_missing_directory(root: Path) -> None:
    with pytest.raises(ContextError, match="nodir/\\*: file not found in build context"):
        resolve_sources(ctx_of(root), ["nodir/*"])


def test_missing_source(root: Path) -> None:
    with pytest.raises(ContextError, match="missing.txt: file not found in build context or excluded"):
        resolve_sources(ctx_of(root), ["app.py", "missing.txt"])
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(ctx_of(root), ["app.py/below"])  # a file is not a directory
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(ctx_of(root), ["dangling"])


@pytest.mark.parametrize("source", ["../outside", "src/../../outside", ".."])
def test_paths_out_of_the_context(root: Path, source: str) -> None:
    with pytest.raises(ContextError, match="outside the build context"):
        resolve_sources(ctx_of(root), [source])


@pytest.mark.parametrize("source", ["escape", "absolute"])
def test_symlinks_resolve_with_the_context_as_root(root: Path, source: str) -> None:
    """BuildKit's rule: `escape -> ../outside` is ctx/outside and `absolute -> /etc/passwd` is ctx/etc/passwd,
    neither of which exists: not found, and the file outside the context (the secret) is never read."""
    with pytest.raises(ContextError, match=f"{source}: file not found in build context"):
        resolve_sources(ctx_of(root), [source])


def test_an_absolute_symlink_names_a_file_of_the_context(root: Path) -> None:
    os.symlink("/app.py", root / "src" / "abs")
    os.symlink("../../../../app.py", root / "src" / "sub" / "far")
    abs_, far = resolve_sources(ctx_of(root), ["src/abs", "src/sub/far"])
    assert abs_ == ResolvedSource("src/abs", root / "app.py", False)
    assert far == ResolvedSource("src/sub/far", root / "app.py", False)


def test_top_level_symlinks_are_followed(root: Path) -> None:
    ctx = ctx_of(root)
    file, directory, through = resolve_sources(ctx, ["applink", "srclink", "srclink/main.go"])
    assert file == ResolvedSource("applink", root / "app.py", False)
    assert directory == ResolvedSource("srclink", root / "src", True)
    assert through == ResolvedSource("srclink/main.go", root / "src" / "main.go", False)


def test_symlinks_inside_a_directory_stay_links(root: Path) -> None:
    ctx = ctx_of(root)
    entries = list(iter_tree(ctx, "src"))
    assert entries == ["main.go", "sub", "sub/deep.go", "up", "util.go"]
    assert os.path.islink(root / "src" / "up")
    # walking through a top-level symlink walks its target
    assert list(iter_tree(ctx, "srclink")) == entries


def test_iter_tree_of_the_root_keeps_outward_links_as_entries(root: Path) -> None:
    entries = list(iter_tree(ctx_of(root), "."))
    assert "escape" in entries and "absolute" in entries and "dangling" in entries
    assert "src/sub/deep.go" in entries


def test_excluded_source_is_not_found(root: Path) -> None:
    ctx = ctx_of(root, "*.md\nsrc/util.go\n")
    with pytest.raises(ContextError, match="README.md: file not found in build context or excluded by"):
        resolve_sources(ctx, ["README.md"])
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(ctx, ["src/util.go"])
    assert rels(resolve_sources(ctx, ["src/*.go"])) == ["src/main.go"]
    assert rels(resolve_sources(ctx, ["*.md", "app.py"])) == ["app.py"]


def test_excluded_symlink_target_is_not_found(root: Path) -> None:
    with pytest.raises(ContextError, match="applink: file not found"):
        resolve_sources(ctx_of(root, "app.py\n"), ["applink"])
    with pytest.raises(ContextError, match="applink: file not found"):
        resolve_sources(ctx_of(root, "applink\n"), ["applink"])


def test_directory_source_copies_only_what_is_not_excluded(root: Path) -> None:
    ctx = ctx_of(root, "src/sub\n**/util.go\n")
    assert rels(resolve_sources(ctx, ["src"])) == ["src"]
    assert list(iter_tree(ctx, "src")) == ["main.go", "up"]


def test_excluded_directory_with_exception_inside(root: Path) -> None:
    ctx = ctx_of(root, "src\n!src/sub/deep.go\n")
    # src is excluded, but the exception brings back src/sub/deep.go and, with it, its parents
    top = list(iter_tree(ctx, "."))
    assert "src" in top and "src/sub" in top and "src/sub/deep.go" in top
    assert "src/main.go" not in top and "src/util.go" not in top and "src/up" not in top
    assert top.index("src") < top.index("src/sub") < top.index("src/sub/deep.go")
    assert list(iter_tree(ctx, "src")) == ["sub", "sub/deep.go"]
    assert rels(resolve_sources(ctx, ["src"])) == ["src"]
    assert rels(resolve_sources(ctx, ["src/sub/deep.go"])) == ["src/sub/deep.go"]
    with pytest.raises(ContextError, match="not found"):
        resolve_sources(ctx, ["src/main.go"])


def test_excluded_directory_without_exception_is_not_found(root: Path) -> None:
    ctx = ctx_of(root, "docs\n!src/x\n")
    with pytest.raises(ContextError, match="docs: file not found"):
        resolve_sources(ctx, ["docs"])
    assert "docs" not in list(iter_tree(ctx, "."))


def test_wildcard_exception_walks_excluded_directories(root: Path) -> None:
    ctx = ctx_of(root, "pkg*\n!**/go.mod\n")
    top = list(iter_tree(ctx, "."))
    assert [e for e in top if e.startswith("pkg")] == ["pkg1", "pkg1/go.mod", "pkg2", "pkg2/go.mod"]
    assert rels(resolve_sources(ctx, ["pkg*"])) == ["pkg1", "pkg2"]


def test_iter_tree_missing_and_file(root: Path) -> None:
    ctx = ctx_of(root)
    with pytest.raises(ContextError, match="nothere"):
        list(iter_tree(ctx, "nothere"))
    assert list(iter_tree(ctx, "app.py")) == []


def test_a_wildcard_matching_a_dangling_symlink_is_an_error(root: Path) -> None:
    """BuildKit ("failed to compute cache key: ... not found") and buildah both fail; kiln skipped the match."""
    with pytest.raises(ContextError, match="dangling: file not found in build context"):
        resolve_sources(ctx_of(root), ["dang*"])
    # Excluded by .dockerignore, it is not there at all: no error.
    assert resolve_sources(ctx_of(root, "dangling\n"), ["dang*"]) == []
