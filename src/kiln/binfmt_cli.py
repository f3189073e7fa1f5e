"""`kiln binfmt`: which platforms RUN steps can execute here, and registering the qemu-user interpreters that let
them (kiln.binfmt has the rules). As tonistiigi/binfmt: ``--install arm64,riscv64`` or ``--install all``,
``--uninstall ...``; without flags it lists each platform and how its binaries run, one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kiln import binfmt
from kiln.errors import EmulationError, UsageError
from kiln.oci.platform import Platform

# Each architecture kiln knows, with arm's two variants apart (a v6 host cannot run v7 binaries).
PLATFORMS = tuple(Platform.parse(p) for p in (
    "linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le", "linux/s390x",
    "linux/riscv64",
))  # fmt: skip


def architectures(value: str, flag: str) -> list[str]:
    """ARCH[,ARCH...] or all (every architecture this host does not run natively) as kiln.binfmt names them."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UsageError("name an architecture (arm64, riscv64, ...) or all", flag)
    if "all" in names:
        return [a for a in binfmt.ARCHES if not binfmt.native(Platform("linux", a))]
    try:
        return [binfmt.architecture(n).name for n in names]
    except EmulationError as e:
        raise UsageError(e.msg, flag) from None


def describe(em: binfmt.Emulation) -> str:
    if em.native:
        return "native"
    if em.problem is None:
        return f"emulated by {em.entry} ({em.interpreter})"
    return f"not runnable: {em.problem}"


@click.command("binfmt")
@click.option("--install", "to_install", default=None, metavar="ARCH[,ARCH...]|all",
              help="Register qemu-ARCH-static (qemu-user-static) with binfmt_misc's F flag (root).")
@click.option("--uninstall", "to_uninstall", default=None, metavar="ARCH[,ARCH...]|all",
              help="Remove the entries kiln registered (root); others' entries stay.")
@click.option("--binfmt-dir", type=click.Path(path_type=Path), default=binfmt.BINFMT_DIR, hidden=True)
def binfmt_command(**kw: Any) -> None:
    """Which platforms RUN steps can execute here; register or remove the qemu-user interpreters (tonistiigi/binfmt)."""
    where: Path = kw["binfmt_dir"]
    if kw["to_uninstall"] is not None:
        names = architectures(kw["to_uninstall"], "--uninstall")
        removed = binfmt.uninstall(names, where)
        click.echo(f"removed: {', '.join(removed)}" if removed else "removed nothing: kiln had registered none of them")
    if kw["to_install"] is not None:
        names = architectures(kw["to_install"], "--install")
        registered = binfmt.install(names, where)
        click.echo(f"registered: {', '.join(registered)}" if registered
                   else "registered nothing: every one of them already runs here")
    width = max(len(str(p)) for p in PLATFORMS)
    for platform in PLATFORMS:
        click.echo(f"{str(platform):<{width}}  {describe(binfmt.emulation(platform, where))}")
