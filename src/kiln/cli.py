"""The command line: flags into BuildOptions, a call to build, KilnError into a message and an exit code.

kaniko's executor flags are the reference set; the docker-style spellings users type (-t, --platform,
--build-context, a positional context) are accepted too. Go-style boolean values (``--cache=true``,
``--ignore-var-run=false``) work as they do for kaniko.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from kiln import __version__
from kiln.engine.options import BuildOptions
from kiln.errors import KilnError, NotSupportedYet, UsageError
from kiln.oci.platform import Platform
from kiln.transports.registry.settings import RegistrySettings

# Boolean flags, with their default, so that kaniko's "--flag=true|false" spelling can be rewritten for click.
_BOOL_FLAGS = {
    "--no-push": False,
    "--single-snapshot": False,
    "--reproducible": False,
    "--cache": False,
    "--cache-copy-layers": False,
    "--cache-run-layers": True,
    "--insecure": False,
    "--insecure-pull": False,
    "--skip-tls-verify": False,
    "--skip-tls-verify-pull": False,
    "--skip-default-registry-fallback": False,
    "--ignore-var-run": True,
    "--cleanup": False,
    "--in-place": False,
    "--dry-run": False,
}


def _rewrite_go_bools(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name in _BOOL_FLAGS:
            truth = value.strip().lower()
            if truth not in ("true", "false", "1", "0", "t", "f"):
                raise UsageError(f"expected true or false, got {value!r}", name)
            on = truth in ("true", "1", "t")
            if on:
                out.append(name)
            elif _BOOL_FLAGS[name]:
                out.append("--no-" + name[2:])
            # off for a default-off flag: simply leave it out
            continue
        out.append(arg)
    return out


def _pairs(values: Sequence[str], flag: str, sep: str = "=") -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, found, val = v.partition(sep)
        if not found or not key:
            raise UsageError(f"expected KEY{sep}VALUE, got {v!r}", flag)
        out[key] = val
    return out


def _build_args(values: Sequence[str]) -> dict[str, str]:
    """--build-arg K=V, or a bare K taking its value from kiln's own environment (skipped when unset)."""
    out: dict[str, str] = {}
    for v in values:
        key, found, val = v.partition("=")
        if not key:
            raise UsageError(f"bad build argument {v!r}", "--build-arg")
        if found:
            out[key] = val
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


def _client_certs(values: Sequence[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for reg, pair in _pairs(values, "--registry-client-cert").items():
        cert, comma, key = pair.partition(",")
        if not comma or not cert or not key:
            raise UsageError(f"expected REGISTRY=CERT,KEY, got {reg}={pair}", "--registry-client-cert")
        out[reg] = (cert, key)
    return out


def _registry_maps(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for v in values:
        orig, found, mirrors = v.partition("=")
        if not found or not orig or not mirrors:
            raise UsageError(f"expected ORIGINAL=MIRROR[;MIRROR...], got {v!r}", "--registry-map")
        out.extend((orig, m) for m in mirrors.split(";") if m)
    return tuple(out)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="kiln")
def cli() -> None:
    """kiln builds container images from Dockerfiles, without a Docker daemon."""


F = TypeVar("F", bound=Callable[..., Any])


def _multi(*names: str, help: str) -> Callable[[F], F]:
    return click.option(*names, multiple=True, default=(), help=help)


@cli.command("build")
@click.argument("positional_context", required=False, metavar="[CONTEXT]")
@click.option("-c", "--context", help="Build context: a directory, a tar (.tar, .tar.gz), or tar://stdin (-).")
@click.option("-f", "--dockerfile", default=None, help="Path to the Dockerfile (default: CONTEXT/Dockerfile).")
@_multi("-d", "--destination", "-t", "--tag", help="Image reference to push to (repeatable).")
@_multi("--build-arg", help="Build argument KEY=VALUE, or KEY to take it from the environment (repeatable).")
@click.option("--target", default=None, help="The stage to build (default: the last one).")
@_multi("--label", help="Label KEY=VALUE set on the image (repeatable).")
@click.option("--tar-path", type=click.Path(path_type=Path), help="Write the image as a docker-archive tarball.")
@click.option("--oci-layout-path", type=click.Path(path_type=Path), help="Write the image into an OCI layout.")
@click.option("--no-push", is_flag=True, help="Build without pushing to the destinations.")
@click.option("--digest-file", type=click.Path(path_type=Path), help="Write the image digest to this file.")
@click.option("--image-name-with-digest-file", type=click.Path(path_type=Path))
@click.option("--image-name-tag-with-digest-file", type=click.Path(path_type=Path))
@click.option(
    "--snapshot-mode",
    type=click.Choice(["auto", "overlay", "full", "redo", "time"]),
    default="auto",
    help="How RUN changes are found: overlay upper dir (auto where allowed) or walking the tree.",
)
@click.option("--single-snapshot", is_flag=True, help="One layer for the whole stage.")
@click.option("--reproducible", is_flag=True, help="Pin timestamps so the same input gives the same digests.")
@click.option("--cache", is_flag=True)
@click.option("--cache-repo", default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--cache-ttl", default=None)
@click.option("--cache-copy-layers", is_flag=True)
@click.option("--cache-run-layers/--no-cache-run-layers", default=True)
@click.option("--insecure", is_flag=True, help="Push to registries over plain HTTP.")
@click.option("--insecure-pull", is_flag=True, help="Pull from registries over plain HTTP.")
@_multi("--insecure-registry", help="A registry reached over plain HTTP (repeatable).")
@click.option("--skip-tls-verify", is_flag=True)
@click.option("--skip-tls-verify-pull", is_flag=True)
@_multi("--skip-tls-verify-registry", help="A registry whose certificate is not verified (repeatable).")
@_multi("--registry-certificate", help="REGISTRY=CA_FILE (repeatable).")
@_multi("--registry-client-cert", help="REGISTRY=CERT,KEY for mutual TLS (repeatable).")
@_multi("--registry-mirror", help="A mirror for Docker Hub (repeatable, tried in order).")
@_multi("--registry-map", help="ORIGINAL=MIRROR[;MIRROR] (repeatable).")
@click.option("--skip-default-registry-fallback", is_flag=True)
@click.option("--custom-platform", default=None, help="os/arch[/variant] of the image to build.")
@click.option("--platform", "docker_platform", default=None, help="Same as --custom-platform.")
@_multi("--ignore-path", help="A path never snapshotted (repeatable).")
@click.option("--ignore-var-run/--no-ignore-var-run", default=True)
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip")
@click.option("--compression-level", type=int, default=None)
@click.option("--format", "manifest_format", type=click.Choice(["auto", "oci", "docker"]), default="auto",
              help="Manifest media types: follow the base image (auto), OCI, or Docker schema 2.")
@click.option("--cleanup", is_flag=True,
              help="After the build, also remove the unpacked layers under --kiln-dir (blobs stay).")
@click.option("--push-retry", type=int, default=0)
@click.option("--image-download-retry", type=int, default=0)
@click.option("--verbosity", "-v", default="info",
              type=click.Choice(["panic", "fatal", "error", "warn", "info", "debug", "trace"]))
@click.option("--log-format", type=click.Choice(["auto", "text", "color", "json"]), default="auto")
@click.option("--kiln-dir", type=click.Path(path_type=Path), default=None, help="kiln's work directory.")
@_multi("--build-context",
        help="NAME=oci-layout://PATH[:TAG], NAME=docker-archive://PATH or NAME=docker-image://REF (repeatable).")
@_multi("--secret", help="id=ID,src=PATH or id=ID,env=VAR: a secret for RUN --mount=type=secret (repeatable).")
@click.option("--network", type=click.Choice(["host", "none"]), default="host",
              help="RUN's network unless the instruction sets one: the host's (kaniko's default) or none.")
@_multi("--allow", help="An entitlement: security.insecure (RUN --security=insecure), network.host (repeatable).")
@click.option("--in-place", is_flag=True, help="kaniko mode: build in the current root (inside a container).")
@click.option("--dry-run", is_flag=True, help="Print the build plan; needs no base image.")
@click.option("--dry-run-format", "--plan-format", type=click.Choice(["text", "json"]), default="text")
def build_command(**kw: Any) -> None:
    """Build an image from a Dockerfile."""
    opts = options_from_flags(kw)
    from kiln.engine.engine import run_build
    from kiln.progress import make_reporter

    run_build(opts, make_reporter(opts.log_format, opts.verbosity))


def _register_diff() -> None:
    from kiln.diff_cli import diff_command

    cli.add_command(diff_command, "diff")


_register_diff()


def options_from_flags(kw: dict[str, Any]) -> BuildOptions:
    context = kw["context"] or kw["positional_context"] or "."
    if kw["context"] and kw["positional_context"] and kw["context"] != kw["positional_context"]:
        raise UsageError("give the context once: as --context or as the argument", "--context")
    if context == "-":
        context = "tar://stdin"
    dockerfile = kw["dockerfile"]
    if dockerfile is None:
        dockerfile = "Dockerfile"
    platform_text = kw["custom_platform"] or kw["docker_platform"]
    if kw["custom_platform"] and kw["docker_platform"] and kw["custom_platform"] != kw["docker_platform"]:
        raise UsageError("--platform and --custom-platform disagree", "--platform")
    if platform_text and "," in platform_text:
        raise NotSupportedYet("--custom-platform" if kw["custom_platform"] else "--platform",
                              f"several platforms in one build ({platform_text}); build each one on its own")
    try:
        platform = Platform.parse(platform_text) if platform_text else Platform.host()
    except UsageError as e:
        raise UsageError(e.msg, "--custom-platform" if kw["custom_platform"] else "--platform") from None
    build_args = _build_args(kw["build_arg"])
    # BuildKit's SOURCE_DATE_EPOCH: a build argument (what buildx passes), else kiln's own environment.
    epoch, flag = (build_args["SOURCE_DATE_EPOCH"], "--build-arg") if "SOURCE_DATE_EPOCH" in build_args else (
        os.environ.get("SOURCE_DATE_EPOCH"), None)
    try:
        source_date_epoch = int(epoch) if epoch else None
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, got {epoch!r}", flag) from None
    registry = RegistrySettings(
        insecure=kw["insecure"],
        insecure_pull=kw["insecure_pull"],
        insecure_registries=tuple(kw["insecure_registry"]),
        skip_tls_verify=kw["skip_tls_verify"],
        skip_tls_verify_pull=kw["skip_tls_verify_pull"],
        skip_tls_verify_registries=tuple(kw["skip_tls_verify_registry"]),
        registry_certificates=_pairs(kw["registry_certificate"], "--registry-certificate"),
        registry_client_certs=_client_certs(kw["registry_client_cert"]),
        registry_mirrors=tuple(kw["registry_mirror"]),
        registry_maps=_registry_maps(kw["registry_map"]),
        skip_default_registry_fallback=kw["skip_default_registry_fallback"],
        push_retry=kw["push_retry"],
        image_download_retry=kw["image_download_retry"],
    )
    opts = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        destinations=tuple(kw["destination"]),
        build_args=build_args,
        target=kw["target"],
        labels=_pairs(kw["label"], "--label"),
        tar_path=kw["tar_path"],
        oci_layout_path=kw["oci_layout_path"],
        no_push=kw["no_push"],
        digest_file=kw["digest_file"],
        image_name_with_digest_file=kw["image_name_with_digest_file"],
        image_name_tag_with_digest_file=kw["image_name_tag_with_digest_file"],
        snapshot_mode=kw["snapshot_mode"],
        single_snapshot=kw["single_snapshot"],
        reproducible=kw["reproducible"],
        source_date_epoch=source_date_epoch,
        cache=kw["cache"],
        cache_repo=kw["cache_repo"],
        cache_dir=kw["cache_dir"],
        cache_ttl=kw["cache_ttl"],
        cache_copy_layers=kw["cache_copy_layers"],
        cache_run_layers=kw["cache_run_layers"],
        registry=registry,
        platform=platform,
        ignore_paths=tuple(kw["ignore_path"]),
        ignore_var_run=kw["ignore_var_run"],
        compression=kw["compression"],
        compression_level=kw["compression_level"],
        manifest_format=kw["manifest_format"],
        cleanup=kw["cleanup"],
        verbosity=kw["verbosity"],
        log_format=kw["log_format"],
        build_contexts=_pairs(kw["build_context"], "--build-context"),
        secrets=tuple(kw["secret"]),
        in_place=kw["in_place"],
        network=kw["network"],
        allow=tuple(a for value in kw["allow"] for a in value.split(",") if a),
        dry_run=kw["dry_run"],
        dry_run_format=kw["dry_run_format"],
        **({"kiln_dir": kw["kiln_dir"]} if kw["kiln_dir"] else {}),
    )
    return opts.validate()


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that mounts are undone and temporary files removed on the way out."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = _rewrite_go_bools(args)
        cli.main(args=args, prog_name="kiln", standalone_mode=False)
    except KilnError as e:
        print(f"error: {e.describe()}", file=sys.stderr)
        return e.exit_code
    except click.exceptions.Abort:
        print("error: interrupted", file=sys.stderr)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except Terminated:
        print("error: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
