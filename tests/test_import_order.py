"""The one-way order of kiln's packages: every import in src/kiln (lazy and TYPE_CHECKING ones included) goes to
a package listed above its own in docs/architecture.md's table. The table is read here, so the document and
the rule cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "kiln"


def documented_order() -> list[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Packages, and which way imports go", 1)[1].split("\n## ", 1)[0]
    order = []
    for line in section.splitlines():
        m = re.match(r"\| `([\w]+)(?:/|\.py)`", line)
        if m:
            order.append(m.group(1))
    return order


def unit_of(module: str) -> str:
    """kiln.engine.steps.run -> engine; kiln.errors -> errors."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kiln_imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every kiln import in a file, wherever it stands (in a function, under
    TYPE_CHECKING). `package`: the file's package, for relative imports (default: from its place in src/)."""
    found = []
    if package is None:
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("kiln.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "kiln":  # from kiln import sandbox (but not: from kiln import __version__)
                found += [(node.lineno, f"kiln.{a.name}") for a in node.names if not a.name.startswith("__")]
            elif target.startswith("kiln."):
                found.append((node.lineno, target))
    return found


def test_the_documented_order_names_every_package_once() -> None:
    order = documented_order()
    assert len(order) == len(set(order)), order
    actual = {p.name if p.is_dir() else p.stem for p in SRC.iterdir()
              if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert set(order) == actual, f"in the table but not in src: {set(order) - actual}; " \
                                 f"in src but not in the table: {actual - set(order)}"


def test_every_import_goes_down_the_documented_order() -> None:
    rank = {name: i for i, name in enumerate(documented_order())}
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        own = unit_of(module_name(path)) if module_name(path) != "kiln" else None
        if own is None:
            continue
        for line, target in kiln_imports(path):
            other = unit_of(target)
            if other != own and rank[other] >= rank[own]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {own} imports {target}")
    assert not wrong, "imports against docs/architecture.md's order:\n" + "\n".join(wrong)


def test_the_check_sees_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    fake = tmp_path / "x.py"
    fake.write_text(
        "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from kiln.cli import main\ndef f():\n    import kiln.progress\n    from ..engine import stage\n"
    )
    found = [target for _, target in kiln_imports(fake, package="kiln.store")]
    assert sorted(found) == ["kiln.cli", "kiln.engine", "kiln.progress"], found
