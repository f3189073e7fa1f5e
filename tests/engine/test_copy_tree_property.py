"""Property: `COPY dir /dst` reproduces the directory exactly, whatever names repeat along its paths.

Trees are drawn from a handful of names, so a directory often holds one of the same name (Django's
`mysite/mysite/settings.py`, `src/src/...`): a source walker that strips the source's name from the paths it
walks a second time loses or misplaces exactly those. The copy runs as the COPY step does (run_copy over the
build context), the paths it declares are written as a layer tar, and that tar is read back with tarfile:
its entries must be the generated tree under /dst, nothing more and nothing less.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Union

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kiln.context.dockerignore import DockerIgnore
from kiln.context.opener import BuildContext
from kiln.dockerfile.expand import Expander
from kiln.dockerfile.instructions import Copy
from kiln.dockerfile.parse import parse_dockerfile
from kiln.engine.steps.copy import ContextTree, run_copy
from kiln.errors import SourceLocation
from kiln.layers import write_layer_tar

pytestmark = pytest.mark.root

# A tree: name -> bytes (a regular file), str (a symlink's target) or a nested tree (a directory).
Tree = dict[str, Union[bytes, str, "Tree"]]

NAMES = ("a", "src", "k", "mysite")
names = st.sampled_from(NAMES)
leaves = st.one_of(st.binary(max_size=64), st.sampled_from(["a", "../k", "src/a", "/etc/passwd"]))
trees: st.SearchStrategy[Tree] = st.recursive(
    st.dictionaries(names, leaves, max_size=3),
    lambda children: st.dictionaries(names, st.one_of(leaves, children), max_size=3),
    max_leaves=16,
)


def _make(path: Path, tree: Tree) -> None:
    path.mkdir()
    for name, node in tree.items():
        if isinstance(node, dict):
            _make(path / name, node)
        elif isinstance(node, str):
            os.symlink(node, path / name)
        else:
            (path / name).write_bytes(node)


def _expected(tree: Tree, prefix: str) -> dict[str, tuple[str, bytes | str]]:
    out: dict[str, tuple[str, bytes | str]] = {}
    for name, node in tree.items():
        rel = f"{prefix}/{name}"
        if isinstance(node, dict):
            out[rel] = ("dir", b"")
            out.update(_expected(node, rel))
        elif isinstance(node, str):
            out[rel] = ("symlink", node)
        else:
            out[rel] = ("file", node)
    return out


def _layer_entries(root: Path, paths: list[str]) -> dict[str, tuple[str, bytes | str]]:
    buf = io.BytesIO()
    write_layer_tar(root, paths, [], buf)
    buf.seek(0)
    out: dict[str, tuple[str, bytes | str]] = {}
    with tarfile.open(fileobj=buf, mode="r") as tar:
        for info in tar.getmembers():
            name = info.name.removeprefix("./").strip("/")
            if info.isdir():
                out[name] = ("dir", b"")
            elif info.issym():
                out[name] = ("symlink", info.linkname)
            else:
                assert info.isfile(), f"{name}: unexpected tar type {info.type!r}"
                f = tar.extractfile(info)
                assert f is not None
                out[name] = ("file", f.read())
    return out


def _copy(dockerfile: str, ctx: Path, root: Path) -> list[str]:
    instr = parse_dockerfile(dockerfile).instructions[1].expand(Expander({}))
    assert isinstance(instr, Copy)
    context = BuildContext(root=ctx, ignore=DockerIgnore(), name=str(ctx))
    return run_copy(instr, ContextTree(context), root, "/", SourceLocation("Dockerfile", 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=names, tree=trees, sibling=trees, slash=st.booleans())
@example(top="mysite", tree={"mysite": {"settings.py": b"DEBUG = True\n"}, "manage.py": b"#!"}, sibling={},
         slash=False)  # fmt: skip
@example(top="a", tree={"a": {"k": {"f": b"f\n"}}}, sibling={"k": {"f": b"wrong\n"}}, slash=False)
@example(top="src", tree={"src": {"src": {"src": b"deep\n"}}, "k": "src/src"}, sibling={}, slash=True)
def test_copy_dir_reproduces_tree_with_repeated_names(top: str, tree: Tree, sibling: Tree, slash: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ctx, root = Path(tmp, "ctx"), Path(tmp, "root")
        ctx.mkdir()
        root.mkdir()
        _make(ctx / top, tree)
        # Context entries beside the source, named like entries inside it: none of them may be copied.
        _make(ctx / "other", sibling)
        for name in sibling:
            if name != top and not (ctx / name).exists():
                os.symlink(f"other/{name}", ctx / name)
        written = _copy(f"FROM scratch\nCOPY {top}{'/' if slash else ''} /dst\n", ctx, root)
        assert _layer_entries(root, written) == {"dst": ("dir", b""), **_expected(tree, "dst")}
