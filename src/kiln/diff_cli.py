"""``kiln diff IMAGE_A IMAGE_B``: compare two images; exit 0 when they are the same, 1 when not, 2 on error.

The exit status is raised as SystemExit from the command itself, so it survives whichever way the command is
invoked (click standalone, kiln.cli.main, CliRunner).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kiln.diff.api import DiffOptions, diff_addresses
from kiln.diff.render import render_json, render_text
from kiln.errors import KilnError
from kiln.oci.platform import Platform
from kiln.transports.registry.options import RegistryOptions

EXIT_SAME = 0
EXIT_DIFFERENT = 1
EXIT_ERROR = 2


@click.command(
    "diff",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.argument("image_a")
@click.argument("image_b")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--ignore", "ignore_paths", multiple=True, help="A path (and all below it) or glob to leave out.")
@click.option(
    "--ignore-config", multiple=True, help="A config field (Env, Labels, ...) or one item of it (Labels:KEY)."
)
@click.option("--mtimes", is_flag=True, help="Compare modification times too.")
@click.option("--layers", is_flag=True, help="Compare layer count and each layer's entry names.")
@click.option("--platform", default=None,
              help="os/arch[/variant]: compare that platform's images only (default: every platform of indexes).")
@click.option("--insecure", is_flag=True, help="Reach registries over plain HTTP.")
@click.option("--skip-tls-verify", is_flag=True, help="Do not verify registry certificates.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Where images are unpacked.")
@click.option("--limit", type=int, default=200, help="At most this many lines per section in text output.")
def diff_command(
    image_a: str,
    image_b: str,
    output_format: str,
    ignore_paths: tuple[str, ...],
    ignore_config: tuple[str, ...],
    mtimes: bool,
    layers: bool,
    platform: str | None,
    insecure: bool,
    skip_tls_verify: bool,
    workdir: Path | None,
    limit: int,
) -> None:
    """Compare two images: IMAGE is oci-layout://PATH[:TAG], docker-archive://PATH or a registry reference.

    Files are compared after applying every layer (type, mode, owner, size, content, link target, hardlinks,
    devices, xattrs); then the config (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
    StopSignal, Healthcheck, Shell, OnBuild, architecture, os). Two indexes are compared platform by platform
    (a platform only one has is a difference); an image and an index, the image with the index's entry for the
    image's platform; --platform compares that platform's images only. Exit status: 0 same, 1 different,
    2 error.
    """
    try:
        options = DiffOptions(
            ignore_paths=ignore_paths,
            ignore_config=ignore_config,
            mtimes=mtimes,
            layers=layers,
            platform=Platform.parse(platform) if platform else None,
            registry=RegistryOptions(insecure=insecure, skip_tls_verify=skip_tls_verify),
            workdir=workdir,
        )
        report = diff_addresses(image_a, image_b, options)
    except KilnError as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(EXIT_ERROR) from None
    if output_format == "json":
        click.echo(render_json(report), nl=False)
    else:
        click.echo(render_text(report, limit=limit), nl=False)
    sys.stdout.flush()
    raise SystemExit(EXIT_SAME if report.same else EXIT_DIFFERENT)
