"""`kiln prune`: the command line of kiln.store.prune (what goes, and why, lives there).

buildx prune's flags: ``--filter until=DURATION``, ``--keep-storage SIZE``, ``--all``; kiln never asks for a
confirmation, so it wants one of the three rather than removing everything by default. It prints one line per
kind — what it removed and the bytes that freed — and, with --dry-run, each entry that would go.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from kiln.cli_flags import registry_settings, shared_registry_flags
from kiln.errors import UsageError
from kiln.store.prune import Inventory, KindResult, Policy, describe_size, inventory, parse_size, prune


def _policy(filters: tuple[str, ...], keep_storage: str | None, all_: bool, now: float) -> Policy:
    from kiln.gotext import go_duration_flag

    until: float | None = None
    for f in filters:
        key, eq, value = f.partition("=")
        if key.strip() != "until" or not eq:
            raise UsageError(f"{f!r}: the filter kiln knows is until=DURATION (24h, 90m)", "--filter")
        until = go_duration_flag(value, "--filter")
        if until < 0:
            raise UsageError(f"{value!r} is negative", "--filter")
    keep: int | None = None
    if keep_storage is not None:
        try:
            keep = parse_size(keep_storage)
        except ValueError:
            raise UsageError(f"{keep_storage!r} is not a size (examples: 10GB, 512MB, 0)", "--keep-storage") from None
    if until is None and keep is None and not all_:
        raise UsageError("say what to remove: --all, --filter until=DURATION or --keep-storage SIZE "
                         "(kiln prune never asks for a confirmation)")
    return Policy(until=until, keep_storage=keep, now=now)


def _duration(seconds: float) -> str:
    for unit, scale in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _line(r: KindResult, dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    freed = "would free" if dry_run else "freed"
    extra = " (the registry's garbage collection reclaims the blobs)" if r.kind == "registry cache" else ""
    return (f"{r.kind}: {verb} {len(r.removed)}, kept {r.kept}, {freed} {r.freed} bytes "
            f"({describe_size(r.freed)}) in {r.where}{extra}")


@click.command("prune")
@click.option("--kiln-dir", type=click.Path(path_type=Path), default=None,
              help="kiln's work directory (default: as for kiln build).")
@click.option("--filter", "filters", multiple=True, metavar="until=DURATION",
              help="Only what no build used in the last DURATION (Go duration: 24h, 1h30m).")
@click.option("--keep-storage", default=None, metavar="SIZE",
              help="Remove least recently used first until the rest takes at most SIZE (10GB, 512MB).")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Everything unused (with --filter or --keep-storage: as they say).")
@click.option("--cache-repo", "cache_repos", multiple=True,
              help="A layer cache to prune too: oci:PATH or a registry repository (repeatable).")
@click.option("--dry-run", is_flag=True, help="List what would go; remove nothing.")
@click.option("-f", "--force", is_flag=True, help="buildx's: kiln never asks anyway.")
@click.option("--verbose", is_flag=True, help="Also list each entry removed.")
@click.option("--insecure", is_flag=True, help="Reach the registry cache over plain HTTP.")
@click.option("--skip-tls-verify", is_flag=True)
@shared_registry_flags
def prune_command(**kw: Any) -> None:
    """Remove unused blobs, unpacked layers, layer-cache entries and cache-mount directories (buildx prune)."""
    from kiln.engine.options import default_kiln_dir, local_cache_path
    from kiln.engine.sweep import sweep_dead_builds

    now = time.time()
    policy = _policy(kw["filters"], kw["keep_storage"], kw["all_"], now)
    kiln_dir: Path = kw["kiln_dir"] or default_kiln_dir()
    if not kiln_dir.is_dir():
        raise UsageError(f"{kiln_dir} is not a kiln directory (no such directory)", "--kiln-dir")
    if not any((kiln_dir / part).is_dir() for part in ("blobs", "layers", "cache", "cache-mounts", "tmp")):
        # Not kiln's: prune must not create its directories in some other place.
        raise UsageError(f"{kiln_dir} is not a kiln directory (no blobs/, layers/, cache/ ...)", "--kiln-dir")
    local: list[Path] = []
    remote: list[str] = []
    for repo in kw["cache_repos"]:
        path = local_cache_path(repo)
        if path is None:
            remote.append(repo)
        elif not path.is_dir():
            raise UsageError(f"{repo!r}: {path} is not a directory", "--cache-repo")
        else:
            local.append(path)
    # Registries first: a repository that is not one, or a registry that refuses, stops before anything local goes.
    registries: list[Inventory] = []
    if remote:
        from kiln.store.prune_registry import add_registry_cache, cache_reference
        from kiln.transports.registry import registry_options

        opts = registry_options(registry_settings(kw), pull=False)
        for repo in remote:
            cache_reference(repo)
        for repo in remote:
            inv = Inventory()
            add_registry_cache(inv, repo, opts, now)
            registries.append(inv)
    results: list[KindResult] = []
    if not kw["dry_run"]:
        # Builds that died without their reaper: their directories under tmp/ (nothing in use).
        for swept in sweep_dead_builds(kiln_dir / "tmp"):
            click.echo(f"removed what a dead build left: {swept}")
    results += prune(inventory(kiln_dir, local, now), policy, dry_run=kw["dry_run"])
    for inv in registries:
        results += prune(inv, policy, dry_run=kw["dry_run"])
    for r in results:
        if kw["dry_run"] or kw["verbose"]:
            for e in r.removed:
                since = "never used" if e.last_used == 0 else f"unused for {_duration(now - e.last_used)}"
                click.echo(f"  {r.kind}: {e.name} ({e.freed} bytes, {since})")
        click.echo(_line(r, kw["dry_run"]))
