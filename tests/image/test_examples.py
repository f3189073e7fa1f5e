"""The examples of kiln's image in CI systems (examples/kubernetes, gitlab-ci, tekton) say what they should.

No YAML library is a dependency of kiln's tests, so the files are read with the little each needs: that they
are YAML-shaped (spaces, no tabs, `key: value` or list items), which image they run, and the executor's
arguments, which must parse: they are given to kiln's image's entry point (/kaniko/executor is
`kiln build --in-place ...`) with --dry-run, on the host, with the CI system's variables filled in. Where a
Python with a YAML library is at hand (Debian's python3-yaml), it parses each file too, and the arguments it
reads must be the ones the little readers here read.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from image_helpers import KILN, REPO

EXAMPLES = REPO / "examples"
IMAGE = "registry.example.com/tools/kiln:0.1.0"
FILES = {"kubernetes": EXAMPLES / "kubernetes/job.yaml", "gitlab-ci": EXAMPLES / "gitlab-ci/.gitlab-ci.yml",
         "tekton": EXAMPLES / "tekton/task.yaml"}  # fmt: skip
# What the CI systems put in place of their variables.
VARIABLES = {
    "${CI_PROJECT_DIR}": "{context}", "${CI_REGISTRY_IMAGE}": "registry.example.com/group/project",
    "${CI_COMMIT_SHORT_SHA}": "0123abcd", "${CI_COMMIT_SHA}": "0123abcd" * 5,
    "$(workspaces.source.path)/$(params.CONTEXT)": "{context}/./", "$(params.DOCKERFILE)": "./Dockerfile",
    "$(params.IMAGE)": "registry.example.com/team/app:1.0", "$(results.IMAGE_DIGEST.path)": "{out}/digest",
    "dir:///workspace": "dir://{context}",
}  # fmt: skip


def _yaml_shaped(text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        assert "\t" not in line, f"line {number}: a tab"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        assert (len(line) - len(line.lstrip(" "))) % 2 == 0, f"line {number}: odd indentation"
        assert re.match(r"^(- |[\w.$/-]+:( |$)|--|\"|[\w$/]|\{)", stripped), f"line {number}: {line!r}"


def _kubernetes_args(text: str) -> list[str]:
    """The list under the kiln container's `args:`."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != "args:":
            continue
        indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
        args = []
        for item in lines[start + 1 :]:
            if not item.startswith(" " * indent + "- "):
                break
            args.append(item.strip()[2:])
        if any(a.startswith("--") for a in args):
            return args
    raise AssertionError("no args: list with the executor's flags")


def _gitlab_args(text: str) -> list[str]:
    """The words of the script item that runs /kaniko/executor (a plain scalar folded over several lines)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- /kaniko/executor")
    words = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.strip().startswith("- ") or not line.startswith(" " * 6):
            break
        words.append(line.strip())
    return shlex.split(" ".join(words))


def _yaml_args(path: Path, name: str) -> list[str] | None:
    """The same arguments as a YAML library reads them, where a Python with one is at hand (Debian's
    python3-yaml), to check the readers above; None without one."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    code = (
        "import json, sys, yaml\n"
        "d = yaml.safe_load(open(sys.argv[1]))\n"
        "if sys.argv[2] == 'gitlab-ci':\n"
        "    args = [s for s in d['build']['script'] if s.startswith('/kaniko/executor')][0]\n"
        "elif sys.argv[2] == 'kubernetes':\n"
        "    args = d['spec']['template']['spec']['containers'][0]['args']\n"
        "else:\n"
        "    args = d['spec']['steps'][0]['args']\n"
        "print(json.dumps(args))\n"
    )
    if python is None or subprocess.run([python, "-c", "import yaml"], capture_output=True).returncode != 0:
        return None
    out = subprocess.run([python, "-c", code, str(path), name], capture_output=True, text=True, check=True).stdout
    args = json.loads(out)
    return shlex.split(args)[1:] if isinstance(args, str) else args


def _fill(args: list[str], context: Path, out: Path) -> list[str]:
    filled = []
    for arg in args:
        for name, value in VARIABLES.items():
            arg = arg.replace(name, value)
        filled.append(arg.replace("{context}", str(context)).replace("{out}", str(out)))
    assert not [a for a in filled if "$" in a], filled
    return filled


@pytest.mark.parametrize("name", sorted(FILES))
def test_example_runs_kilns_image_with_arguments_that_parse(name: str, tmp_path: Path) -> None:
    text = FILES[name].read_text()
    _yaml_shaped(text)
    images = set(re.findall(r"(?:image|name): (registry\.example\.com/\S+|\$\(params\.BUILDER_IMAGE\)\S*)", text))
    assert images and all(i.startswith(IMAGE) or i.startswith("$(params.BUILDER_IMAGE)") for i in images), images
    if name == "gitlab-ci":
        assert f"name: {IMAGE}-debug" in text and 'entrypoint: [""]' in text  # a shell runs `script`
        args = _gitlab_args(text)
    else:
        args = _kubernetes_args(text)
        args = [a for a in args if a != "$(params.EXTRA_ARGS)"]
    assert any(a.startswith("--destination") for a in args), args
    parsed = _yaml_args(FILES[name], name)
    if parsed is not None:
        assert [a for a in parsed if a != "$(params.EXTRA_ARGS)"] == args
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG VERSION\nFROM scratch\nENV V=$VERSION\n")
    out = tmp_path / "out"
    out.mkdir()
    # What /kaniko/executor runs (image/executor), with --dry-run: no base image, no registry, no build in place.
    argv = [str(KILN), "build", "--in-place", "--ignore-path=/kaniko", *_fill(args, context, out), "--dry-run"]
    # In the context's directory: a dry run does not read a dir:// context (kiln's engine._dry_run takes only a
    # plain path for one), so the Dockerfile is found from the working directory.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, cwd=context)
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    assert "FROM scratch" in proc.stdout


def test_executor_is_kiln_build_in_place() -> None:
    """The examples' arguments were checked against what image/executor runs: keep the two in step."""
    text = (REPO / "image/executor").read_text()
    assert '["build", "--in-place", *own, *args]' in text and '"--ignore-path=/kaniko"' in text
