"""COPY and WORKDIR semantics met in real projects, built with `kiln build` and read back without kiln.

Expected values come from BuildKit's documented behaviour (the Dockerfile reference, BuildKit's changelog and
issues cited at each test) or from what buildah does where the two agree; never from kiln's own output.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from integ_helpers import TAG, Kiln, write_context

from support.images import flatten_layout

pytestmark = pytest.mark.root


def _without_root(layer: Mapping[str, object]) -> set[str]:
    return {name for name in layer if name != "."}


def test_copy_dir_holding_a_dir_of_the_same_name(kiln: Kiln, tmp_path: Path) -> None:
    # Django's layout (mysite/mysite/settings.py) and src/src trees: the inner directory has the source's name.
    ctx = write_context(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM scratch\nCOPY mysite /app\nCOPY a /a\n",
            "mysite/manage.py": "import mysite.settings\n",
            "mysite/mysite/__init__.py": "",
            "mysite/mysite/settings.py": "DEBUG = False\n",
            "a/a/k/f": "inner\n",
            "a/k": "outer\n",
            # Beside the sources, named like their inner entries: never copied in their place.
            "k/f": "wrong\n",
            "settings.py": "wrong\n",
        },
    )
    out = kiln.build(ctx).ok()
    layers = out.new_layers(0)
    assert _without_root(layers[0]) == {
        "app", "app/manage.py", "app/mysite", "app/mysite/__init__.py", "app/mysite/settings.py",
    }  # fmt: skip
    assert _without_root(layers[1]) == {"a", "a/a", "a/a/k", "a/a/k/f", "a/k"}
    tree = flatten_layout(out.layout, TAG, tmp_path)
    assert tree["/app/mysite/settings.py"].size == len("DEBUG = False\n")
    assert (tree["/a/a/k/f"].size, tree["/a/k"].size) == (len("inner\n"), len("outer\n"))


def test_wildcard_matching_nothing_leaves_one_source(kiln: Kiln, tmp_path: Path) -> None:
    # BuildKit has no "more than one source" check; the legacy builder and kaniko count the sources found: the
    # wildcard found nothing, so foo is the only source and /hello is the file foo (not a directory).
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": "FROM scratch\nCOPY nomatch* foo /hello\nCOPY no*match foo nothing? /dir/hello\n",
         "foo": "foo\n"},
    )  # fmt: skip
    out = kiln.build(ctx).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    hello = tree["/hello"]
    assert (hello.type, hello.size, hello.mode, hello.uid, hello.gid) == ("file", 4, 0o644, 0, 0)
    assert tree["/dir/hello"].type == "file" and tree["/dir/hello"].sha256 == hello.sha256
    assert "/hello/foo" not in tree and "/dir/hello/foo" not in tree


def test_two_sources_found_still_need_a_directory_destination(kiln: Kiln, tmp_path: Path) -> None:
    # Two sources found, destination without "/": the legacy builder's and kaniko's error.
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY nomatch* foo f* /hello\n", "foo": "foo\n"})
    # f* matches foo: two sources found (foo twice), so this is refused.
    out = kiln.build(ctx).failed()
    assert "must be a directory and end with a /" in out.stderr


def test_chmod_applies_to_the_directories_the_copy_creates(kiln: Kiln, tmp_path: Path) -> None:
    # BuildKit >= 0.21 (tonistiigi/fsutil#228 for moby/buildkit#4945; moby/moby#49851 shows 28.1's result):
    # the directories COPY --chmod creates, the destination of a directory and missing parents, get the mode.
    # Directories that exist are left alone.
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": "FROM scratch\n"
                       "COPY --chmod=777 dir /dir777\n"
                       "COPY --chmod=770 foo /parent/sub/foo\n"
                       "COPY --chmod=700 foo /parent/sub/again/\n"
                       "COPY foo /plain/sub/foo\n",
         "foo": "foo\n", "dir/sub/x": "x\n"},
    )  # fmt: skip
    (ctx / "dir").chmod(0o750)
    out = kiln.build(ctx).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    modes = {path: (info.type, info.mode) for path, info in tree.items() if path != "/"}
    assert modes == {
        "/dir777": ("dir", 0o777), "/dir777/sub": ("dir", 0o777), "/dir777/sub/x": ("file", 0o777),
        "/parent": ("dir", 0o770), "/parent/sub": ("dir", 0o770), "/parent/sub/foo": ("file", 0o770),
        "/parent/sub/again": ("dir", 0o700), "/parent/sub/again/foo": ("file", 0o700),
        "/plain": ("dir", 0o755), "/plain/sub": ("dir", 0o755), "/plain/sub/foo": ("file", 0o644),
    }  # fmt: skip


def test_user_root_without_passwd_owns_workdir_and_chown(kiln: Kiln, tmp_path: Path) -> None:
    # root is uid 0 without a passwd file: BuildKit (llb.WithUser) and kaniko create /w as 0:0, and take
    # --chown=root as uid 0 (buildah 1.28 refuses the --chown: docs/conformance.md).
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": "FROM scratch\nUSER root\nWORKDIR /w\nCOPY --chown=root:77 foo /w/sub/foo\n", "foo": "foo\n"},
    )
    out = kiln.build(ctx).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    owners = {path: (info.type, info.uid, info.gid) for path, info in tree.items() if path != "/"}
    assert owners == {"/w": ("dir", 0, 0), "/w/sub": ("dir", 0, 77), "/w/sub/foo": ("file", 0, 77)}
    assert out.config()["config"]["WorkingDir"] == "/w"


def test_numeric_user_without_passwd_entry_owns_workdir_with_its_own_gid(kiln_bb: Kiln, tmp_path: Path) -> None:
    # BuildKit resolves a numeric USER for a file operation as uid:uid (its readUser, ByID); buildah agrees.
    # RUN keeps runc's gid 0 for the same user.
    ctx = write_context(
        tmp_path / "ctx", {"Dockerfile": "FROM busybox\nUSER 9999\nWORKDIR /a/b\nRUN id -g > /tmp/gid\n"}
    )
    out = kiln_bb.build(ctx).ok()
    tree = flatten_layout(out.layout, TAG, tmp_path)
    assert (tree["/a"].uid, tree["/a"].gid) == (9999, 9999)
    assert (tree["/a/b"].uid, tree["/a/b"].gid) == (9999, 9999)
    gid_file = tree["/tmp/gid"]
    assert (gid_file.uid, gid_file.gid) == (9999, 0)
