""".dockerignore matching. Expected values come from Docker's documented rules and moby's patternmatcher
semantics (worked out by hand for each case, noted where not obvious)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.context import gomatch
from kiln.context.dockerignore import DockerIgnore
from kiln.errors import ContextError


def excluded(patterns: str, path: str) -> bool:
    return DockerIgnore.parse(patterns).matches(path)


# One pattern against one path: does the pattern exclude the path (or a parent of it)?
SINGLE = [
    # Docker docs: */temp* excludes files and dirs starting with temp one level down, not at the root
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "temp", False),
    ("*/temp*", "a/b/temporary", False),
    ("*/temp*", "somedir/temp/inside", True),  # parent dir somedir/temp matches
    ("*/*/temp*", "a/b/temporary", True),
    ("*/*/temp*", "a/temporary", False),
    # temp? : exactly one more character, at the root
    ("temp?", "tempa", True),
    ("temp?", "temp", False),
    ("temp?", "tempab", False),
    ("temp?", "a/tempa", False),
    # ** spans any number of directories, zero included
    ("**/*.go", "main.go", True),
    ("**/*.go", "cmd/x/main.go", True),
    ("**/*.go", "main.go.txt", False),
    ("**/*.go", "cmd/gofile", False),
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**/**", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file", "file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),  # * stops at /, and a/dir does not match a/*.txt
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("**/foo/bar", "dir/foo/bar/baz", True),  # parent dir/foo/bar matches
    ("abc/**", "abc", False),  # the contents, not the directory itself
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    # moby reads a leading ** followed by literals as a plain suffix test: **foo matches barfoo
    ("**foo", "barfoo", True),
    # character classes, as Go's filepath.Match
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    ("a[^b-d]e", "ace", False),
    ("a[!]e", "a!e", True),  # Go negates with ^ only: ! is an ordinary member
    ("a[\\]]e", "a]e", True),
    ("[z-a]", "z", False),  # a reversed range is valid and matches nothing
    ("file[0-9].txt", "file7.txt", True),
    ("file[0-9].txt", "filex.txt", False),
    # regex metacharacters are literal
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcZdef", False),
    ("abc.def", "abc.def", True),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a^b", "a^b", True),
    # escapes
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("a\\\\", "a\\", True),
    # a pattern naming a directory excludes what is below it
    ("node_modules", "node_modules", True),
    ("node_modules", "node_modules/x/y.js", True),
    ("node_modules", "src/node_modules", False),
    ("node_modules", "node_modules2", False),
    # cleaning: leading /, ./, .., //, trailing /
    ("/foo", "foo", True),
    ("/foo", "a/foo", False),
    ("./foo", "foo", True),
    ("foo/./bar", "foo/bar", True),
    ("foo//bar", "foo/bar", True),
    ("foo/../bar", "bar", True),
    ("foo/../bar", "foo/bar", False),
    ("foo/", "foo", True),  # unlike .gitignore, a trailing / does not limit the pattern to directories
    ("foo/", "foo/x", True),
    ("../foo", "foo", False),  # stays "../foo": nothing in the context is named that
    ("/../foo", "foo", True),  # ".." at the root stays at the root
    ("*", "anything", True),
    ("*", "a/b", True),  # parent "a" matches
]


@pytest.mark.parametrize(("pattern", "path", "expected"), SINGLE)
def test_single_pattern(pattern: str, path: str, expected: bool) -> None:
    assert excluded(pattern, path) is expected


def test_paths_are_cleaned_before_matching() -> None:
    ignore = DockerIgnore.parse("foo/bar")
    assert ignore.matches("./foo/bar")
    assert ignore.matches("/foo/bar")
    assert ignore.matches("foo//bar/")
    assert not ignore.matches(".")


def test_exception_reincludes_a_file() -> None:
    text = "*.md\n!README.md\n"
    assert excluded(text, "CHANGES.md")
    assert not excluded(text, "README.md")
    assert excluded(text, "docs/x.md") is False  # *.md is for the root only


def test_later_lines_win() -> None:
    # Docker docs: README-secret.md stays excluded when its line comes after the exception...
    assert excluded("*.md\n!README*.md\nREADME-secret.md\n", "README-secret.md")
    assert not excluded("*.md\n!README*.md\nREADME-secret.md\n", "README-other.md")
    # ...and is included when the exception comes last
    assert not excluded("*.md\nREADME-secret.md\n!README*.md\n", "README-secret.md")
    assert excluded("!a\na\n", "a")
    assert not excluded("a\n!a\n", "a")


def test_important_exception_under_wildcard() -> None:
    text = "**/*.md\n!important.md\n"
    assert not excluded(text, "important.md")
    assert excluded(text, "docs/important.md")  # the exception names the root file only
    assert excluded(text, "other.md")


def test_directory_excluded_with_file_reincluded() -> None:
    ignore = DockerIgnore.parse("dir\n!dir/keep\n")
    assert ignore.matches("dir")
    assert ignore.matches("dir/other")
    assert ignore.matches("dir/sub/file")
    assert not ignore.matches("dir/keep")
    assert not ignore.matches("dir/keep/inside")  # the exception matches the parent dir/keep
    assert not ignore.matches("dirx")


def test_everything_but() -> None:
    ignore = DockerIgnore.parse("*\n!src\n!Dockerfile\n")
    assert ignore.matches("README")
    assert ignore.matches("build/out")
    assert not ignore.matches("src")
    assert not ignore.matches("src/main.c")
    assert not ignore.matches("Dockerfile")


def test_parent_results_fold_like_buildkit() -> None:
    # Worked through moby's MatchesUsingParentResults (what fsutil's walker uses): at "a" the exception "!a"
    # is skipped (nothing excluded yet), so it does not pass on to "a/x", which "*/x" then excludes; "!a" is
    # tried on "a/x" itself only, and does not match it.
    assert excluded("*/x\n!a\n", "a/x")
    assert not excluded("*/x\n!a\n", "a")


def test_comments_blank_lines_and_whitespace() -> None:
    text = "# a comment\n\n   \n  spaced  \n #not-a-comment\n\t!  keep  \n"
    ignore = DockerIgnore.parse(text)
    assert [(p.text, p.exception, p.line) for p in ignore.patterns] == [
        ("spaced", False, 4),
        ("#not-a-comment", False, 5),
        ("keep", True, 6),
    ]
    assert ignore.matches("spaced")
    assert ignore.matches("#not-a-comment")
    assert not ignore.matches("# a comment")


def test_crlf_and_bom() -> None:
    ignore = DockerIgnore.parse("\ufefffirst\r\nsecond\r\n")
    assert [p.text for p in ignore.patterns] == ["first", "second"]
    assert ignore.matches("first")


def test_exception_pattern_is_cleaned() -> None:
    ignore = DockerIgnore.parse("*\n! /inverted/abs/path\n")
    assert ignore.patterns[1].text == "inverted/abs/path"
    assert ignore.patterns[1].exception
    assert not ignore.matches("inverted/abs/path")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("ok\n!\n", 2),
        ("ok\n\n! \n", 3),
        ("[\n", 1),
        ("a\nb\nfoo[\n", 3),
        ("[]\n", 1),
        ("[a-]\n", 1),
        ("[-a]\n", 1),
        ("x[^\n", 1),
        ("trailing\\\n", 1),
        ("x/[a\\\n", 1),
    ],
)
def test_bad_patterns_name_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ContextError, match=rf"\.dockerignore:{line}:"):
        DockerIgnore.parse(text)


def test_bad_pattern_error_names_custom_source() -> None:
    with pytest.raises(ContextError, match=r"app\.Dockerfile\.dockerignore:1:"):
        DockerIgnore.parse("[", "app.Dockerfile.dockerignore")


def test_empty_ignore_matches_nothing() -> None:
    ignore = DockerIgnore.parse("# only a comment\n\n")
    assert not ignore
    assert not ignore.matches("anything")
    assert not ignore.may_contain_exceptions("anything")


def test_may_contain_exceptions_by_prefix() -> None:
    ignore = DockerIgnore.parse("dir\nother\n!dir/sub/keep\n")
    assert ignore.may_contain_exceptions("dir")
    assert ignore.may_contain_exceptions("dir/sub")
    assert not ignore.may_contain_exceptions("dir/elsewhere")
    assert not ignore.may_contain_exceptions("other")
    assert not ignore.may_contain_exceptions("di")


def test_may_contain_exceptions_trailing_glob_is_a_prefix() -> None:
    ignore = DockerIgnore.parse("dir\n!dir/sub/*\n")
    assert ignore.may_contain_exceptions("dir/sub")
    assert not ignore.may_contain_exceptions("dir/other")


def test_may_contain_exceptions_with_wildcard_exception_walks_everything() -> None:
    ignore = DockerIgnore.parse("vendor\n!**/LICENSE\n")
    assert ignore.may_contain_exceptions("vendor")
    assert ignore.may_contain_exceptions("anything/else")
    assert not DockerIgnore.parse("vendor\n").may_contain_exceptions("vendor")


# --- Go's path.Clean and filepath.Match, the building blocks -----------------------------------------------


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        (".", "."),
        ("a/b/", "a/b"),
        ("a//b", "a/b"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a/../b", "b"),
        ("a/..", "."),
        ("..", ".."),
        ("../../a", "../../a"),
        ("a/../../b", "../b"),
        ("/", "/"),
        ("/..", "/"),
        ("/../a", "/a"),
        ("//a//", "/a"),
    ],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert gomatch.clean(path) == cleaned


@pytest.mark.parametrize(
    ("path", "wild"),
    [("a/b", False), ("a/*.c", True), ("a?", True), ("[ab]", True), ("a\\*", False), ("a\\\\*", True)],
)
def test_has_wildcards(path: str, wild: bool) -> None:
    assert gomatch.has_wildcards(path) is wild


# --- properties -------------------------------------------------------------------------------------------

_element = st.text(alphabet="abcxyz019._-", min_size=1, max_size=6).filter(lambda e: e not in (".", ".."))
_path = st.lists(_element, min_size=1, max_size=4).map("/".join)


@given(_path, _element)
def test_literal_pattern_matches_itself_and_below(path: str, child: str) -> None:
    ignore = DockerIgnore.parse(path)
    assert ignore.matches(path)
    assert ignore.matches(f"{path}/{child}")
    assert ignore.matches(f"/{path}/")
    assert not ignore.matches(path + "~")  # a sibling with a longer name
    reincluded = DockerIgnore.parse(f"{path}\n!{path}")
    assert not reincluded.matches(path)
    assert not reincluded.matches(f"{path}/{child}")


@given(_path, _element)
def test_exception_inside_excluded_dir_reaches_only_that_entry(path: str, child: str) -> None:
    ignore = DockerIgnore.parse(f"{path}\n!{path}/{child}\n")
    assert ignore.may_contain_exceptions(path)
    assert not ignore.matches(f"{path}/{child}")
    assert ignore.matches(f"{path}/{child}x")


@given(st.text(alphabet="ab*?", min_size=1, max_size=6), st.text(alphabet="ab", max_size=6))
def test_glob_agrees_with_fnmatch_on_simple_patterns(pattern: str, name: str) -> None:
    # For * and ? in one path element, Go's filepath.Match and Python's fnmatchcase agree.
    ours = gomatch.glob_regex(pattern).fullmatch(name) is not None
    assert ours == fnmatch.fnmatchcase(name, pattern)


@given(st.lists(_element, min_size=1, max_size=4))
def test_double_star_prefix_and_suffix(elements: list[str]) -> None:
    path = "/".join(elements)
    # **/NAME matches NAME at any depth
    assert DockerIgnore.parse(f"**/{elements[-1]}").matches(path)
    # FIRST/** matches everything below FIRST, not FIRST itself
    below = DockerIgnore.parse(f"{elements[0]}/**")
    assert not below.matches(elements[0])
    assert below.matches(f"{elements[0]}/x")
    assert below.matches(path) is (len(elements) > 1)
