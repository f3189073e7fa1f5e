"""`kiln warm`: kaniko's warmer. Stores base images in a --cache-dir, which `kiln build --cache-dir` looks in
before any registry (transports/imagecache.py has the directory's format).

The images are the --image values and, with --dockerfile, the images its stages are built FROM (and COPY --from
and RUN --mount from=), its ARGs set by --build-arg. As kaniko's warmer, an image that cannot be stored is a
warning and the command fails only when none could be; an image already stored and younger than --cache-ttl is
not fetched again unless --force.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from kiln.cli_flags import (
    build_args,
    flag_names,
    kaniko_notices,
    kaniko_table_options,
    multi,
    registry_settings,
    shared_registry_flags,
)
from kiln.errors import KilnError, RegistryError, UsageError
from kiln.oci.platform import Platform
from kiln.progress import Reporter, make_reporter
from kiln.transports.blobstore import BlobStore
from kiln.transports.imagecache import DEFAULT_TTL, ImageCache, current_digest
from kiln.transports.registry import RegistryOptions, registry_options
from kiln.transports.registry.pull import pull_image


def dockerfile_images(path: str, args: dict[str, str], platform: Platform) -> list[str]:
    """The images a Dockerfile's stages use (FROM, COPY --from, RUN --mount from=), each once, in order: of
    every stage, not only those the last one needs (kaniko's warmer reads every FROM)."""
    from kiln.dockerfile.parse import parse_dockerfile
    from kiln.dockerfile.plan import plan_build

    try:
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", "--dockerfile") from None
    df = parse_dockerfile(text, path)
    first = plan_build(df, args, None, platform, Platform.host())
    found: list[str] = []
    for target in [None, *sorted(first.names)]:
        plan = first if target is None else plan_build(df, args, target, platform, Platform.host())
        for stage in plan.stages:
            for image in (stage.base_image, *stage.images):
                if image and image != "scratch" and image not in found:
                    found.append(image)
    return found


def warm_one(cache: ImageCache, ref: str, platform: Platform, opts: RegistryOptions, force: bool) -> str:
    """Store one image; returns what happened, for the log."""
    if not force:
        digest = current_digest(ref, platform, opts)
        if cache.fresh(digest):
            cache.remember(ref, platform, digest)
            return f"{ref}: already in {cache.root} ({digest})"
    cache.root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".pull-", dir=cache.root))
    try:
        image = pull_image(ref, platform, BlobStore(scratch), opts)
        path = cache.put(ref, platform, image, replace=force)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"{ref}: stored as {path}"


def warm(images: Sequence[str], cache: ImageCache, platform: Platform, opts: RegistryOptions, force: bool,
         reporter: Reporter) -> None:
    failed: list[str] = []
    for ref in images:
        try:
            reporter.info(warm_one(cache, ref, platform, opts, force))
        except (KilnError, OSError) as e:
            reporter.warning(f"{ref}: not stored: {e}")
            failed.append(ref)
    if images and len(failed) == len(images):
        raise RegistryError(f"none of the images could be stored in {cache.root}")


@click.command("warm")
@multi("-i", "--image", help="An image to store (repeatable).")
@click.option("-c", "--cache-dir", type=click.Path(path_type=Path), default=Path("/cache"), show_default=True,
              help="Where to store them: the --cache-dir of `kiln build`.")
@click.option("-f", "--force", is_flag=True, help="Store again even when a fresh copy is there.")
@click.option("--cache-ttl", default=None, help="A copy older than this (Go duration, default 336h) is refreshed.")
@click.option("-d", "--dockerfile", default=None, help="Also store the images this Dockerfile's stages use.")
@multi("--build-arg", help="KEY=VALUE for the Dockerfile's ARGs (repeatable).")
@click.option(*flag_names("--custom-platform", command="warm"), "custom_platform", default=None,
              help="os/arch[/variant] to store (default: this machine's).")
@click.option("--insecure-pull", is_flag=True, help="Pull over plain HTTP.")
@click.option("--skip-tls-verify-pull", is_flag=True)
@shared_registry_flags
@click.option("--image-download-retry", type=int, default=0)
@click.option("--verbosity", "-v", default="info",
              type=click.Choice(["panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"]))
@click.option("--log-format", type=click.Choice(["auto", "text", "color", "json"]), default="auto")
@kaniko_table_options("warm")
def warm_command(**kw: Any) -> None:
    """Store base images in a directory that `kiln build --cache-dir` reads first (kaniko's warmer)."""
    from kiln.gotext import go_duration_flag

    platform_text = kw["custom_platform"]
    try:
        platform = Platform.parse(platform_text) if platform_text else Platform.host()
    except UsageError as e:
        raise UsageError(e.msg, "--custom-platform") from None
    ttl = go_duration_flag(kw["cache_ttl"], "--cache-ttl") if kw["cache_ttl"] else DEFAULT_TTL
    images = list(kw["image"])
    if kw["dockerfile"]:
        images += [i for i in dockerfile_images(kw["dockerfile"], build_args(kw["build_arg"]), platform)
                   if i not in images]
    if not images:
        raise UsageError("nothing to store: give --image or a --dockerfile with FROM images", "--image")
    opts = registry_options(registry_settings(kw), pull=True)
    reporter = make_reporter(kw["log_format"], kw["verbosity"])
    for notice in kaniko_notices(kw, "warm"):
        reporter.warning(notice)
    warm(images, ImageCache(kw["cache_dir"], ttl, reporter.warning), platform, opts, kw["force"], reporter)
