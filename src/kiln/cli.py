"""The command line: flags into BuildOptions, a call to build, KilnError into a message and an exit code.

kaniko's executor flags are the reference set, all of them (kaniko_flags.py says what kiln does with each: the
flags that are meaningless for kiln or ask for what it lacks are registered from that table, and give a notice
or a NotSupportedYet); the docker-style spellings users type (-t, --platform, --build-context, a positional
context) are accepted too. Go-style boolean values (``--cache=true``, ``--ignore-var-run=false``) work as they
do for kaniko.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kiln import __version__
from kiln.cli_flags import (
    build_args,
    flag_names,
    kaniko_notices,
    kaniko_table_options,
    multi,
    pairs,
    refuse_unsupported,
    registry_settings,
    rewrite_go_bools,
    shared_registry_flags,
)
from kiln.engine.options import BuildOptions

if TYPE_CHECKING:
    from kiln.context.git import GitOptions
from kiln.errors import KilnError, NotSupportedYet, UsageError
from kiln.gotext import go_bool
from kiln.oci.platform import Platform


class _LazyGroup(click.Group):
    """Commands other than build are imported when asked for: `kiln build` and `kiln --version` do not pay for
    the diff engine's or the warmer's imports."""

    _LAZY = {"diff": ("kiln.diff_cli", "diff_command"), "warm": ("kiln.warm_cli", "warm_command"),
             "prune": ("kiln.prune_cli", "prune_command"), "binfmt": ("kiln.binfmt_cli", "binfmt_command"),
             "manifest": ("kiln.manifest_cli", "manifest_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY and cmd_name not in self.commands:
            import importlib

            module, attr = self._LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="kiln")
def cli() -> None:
    """kiln builds container images from Dockerfiles, without a Docker daemon."""


@cli.command("build")
@click.argument("positional_context", required=False, metavar="[CONTEXT]")
@click.option("-c", "--context", help="Build context: a directory, a tar (.tar, .tar.gz), tar://stdin (-), an "
              "http(s) URL of a tarball, or a git repository (git://HOST/REPO#REF, https://HOST/REPO.git#REF:DIR, "
              "git@HOST:REPO.git#REF:DIR).")
@click.option("--context-sub-path", default=None, help="A subdirectory of a directory or git context to build from.")
@click.option("--git", "git", default=None,
              help="A git:// context's options: branch=NAME,depth=N,recurse-submodules=BOOL,insecure-skip-tls=BOOL.")
@click.option("-f", "--dockerfile", default=None, help="Path to the Dockerfile (default: CONTEXT/Dockerfile).")
@multi("-d", "--destination", "-t", "--tag", help="Image reference to push to (repeatable).")
@multi("--build-arg", help="Build argument KEY=VALUE, or KEY to take it from the environment (repeatable).")
@click.option("--target", default=None, help="The stage to build (default: the last one).")
@multi("--label", help="Label KEY=VALUE set on the image (repeatable).")
@multi("--annotation", help="Annotation KEY=VALUE set on the image's manifest (repeatable; OCI manifests).")
@click.option(*flag_names("--tar-path"), "tar_path", type=click.Path(path_type=Path),
              help="Write the image as a docker-archive tarball.")
@click.option("--oci-layout-path", type=click.Path(path_type=Path), help="Write the image into an OCI layout.")
@click.option("--no-push", is_flag=True, help="Build without pushing to the destinations.")
@click.option("--digest-file", type=click.Path(path_type=Path), help="Write the image digest to this file.")
@click.option("--image-name-with-digest-file", type=click.Path(path_type=Path))
@click.option("--image-name-tag-with-digest-file", type=click.Path(path_type=Path))
@click.option(
    *flag_names("--snapshot-mode"), "snapshot_mode",
    type=click.Choice(["auto", "overlay", "full", "redo", "time"]),
    default="auto",
    help="How RUN changes are found: overlay upper dir (auto where allowed) or walking the tree.",
)
@click.option("--single-snapshot", is_flag=True, help="One layer for the whole stage.")
@click.option("--reproducible", is_flag=True, help="Pin timestamps so the same input gives the same digests.")
@click.option("--cache", is_flag=True, help="Use the layer cache.")
@click.option("--cache-repo", default=None,
              help="The layer cache's registry repository, or oci:PATH for a local directory.")
@click.option("--no-push-cache", is_flag=True, help="Read the layer cache, never write to it.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Base images stored by `kiln warm`, looked in before any registry.")
@click.option("--cache-ttl", default=None, help="Cache entries older than this (Go duration, 336h) are misses.")
@click.option("--cache-copy-layers", is_flag=True)
@click.option("--cache-run-layers/--no-cache-run-layers", default=True)
@click.option("--insecure", is_flag=True, help="Push to registries over plain HTTP.")
@click.option("--insecure-pull", is_flag=True, help="Pull from registries over plain HTTP.")
@click.option("--skip-tls-verify", is_flag=True)
@click.option("--skip-tls-verify-pull", is_flag=True)
@shared_registry_flags
@click.option(*flag_names("--custom-platform"), "custom_platform", default=None,
              help="os/arch[/variant] of the image to build; several, comma-separated, make an index.")
@click.option("--platform", "docker_platform", default=None, help="Same as --custom-platform.")
@click.option("--jobs", type=int, default=None, help="Platforms built at once (default: the number of cores).")
@multi("--ignore-path", help="A path never snapshotted (repeatable).")
@click.option("--ignore-var-run/--no-ignore-var-run", "--whitelist-var-run/--no-whitelist-var-run",
              "ignore_var_run", default=True)
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip")
@click.option("--compression-level", type=int, default=None, help="gzip 0-9, zstd 1-22 (-1: the default).")
@click.option("--format", "manifest_format", type=click.Choice(["auto", "oci", "docker"]), default="auto",
              help="Manifest media types: follow the base image (auto), OCI, or Docker schema 2.")
@click.option("--cleanup", is_flag=True,
              help="After the build, also remove the unpacked layers this build made (not those another build is "
                   "using; blobs stay); in place, empty / of the build.")
@click.option("--push-retry", type=int, default=0)
@click.option("--push-ignore-immutable-tag-errors", is_flag=True,
              help="Leave a tag the registry refuses to overwrite (immutable) as it is, with a warning.")
@click.option("--image-download-retry", type=int, default=0)
@click.option("--verbosity", "-v", default="info",
              type=click.Choice(["panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"]))
@click.option("--log-format", type=click.Choice(["auto", "text", "color", "json"]), default="auto")
@click.option("--kiln-dir", type=click.Path(path_type=Path), default=None, help="kiln's work directory.")
@click.option("--kaniko-dir", type=click.Path(path_type=Path), default=None, help="Same as --kiln-dir.")
@multi("--build-context",
        help="NAME=oci-layout://PATH[:TAG], NAME=docker-archive://PATH or NAME=docker-image://REF (repeatable).")
@multi("--ssh", help="default|ID[=SOCKET|KEY[,KEY]]: an SSH agent (default: $SSH_AUTH_SOCK) or keys for RUN "
       "--mount=type=ssh (repeatable).")
@multi("--secret", help="id=ID,src=PATH or id=ID,env=VAR: a secret for RUN --mount=type=secret (repeatable).")
@click.option("--network", type=click.Choice(["host", "none"]), default="host",
              help="RUN's network unless the instruction sets one: the host's (kaniko's default) or none.")
@multi("--allow", help="An entitlement: security.insecure (RUN --security=insecure), network.host (repeatable).")
@click.option("--in-place", is_flag=True, help="kaniko mode: build in the current root (inside a container).")
@click.option("--pre-cleanup", is_flag=True, help="In place: clear / of what an earlier build left, first.")
@click.option("--materialize", is_flag=True, help="In place: leave the target's files in / after the build.")
@click.option("--dry-run", is_flag=True, help="Print the build plan; needs no base image.")
@click.option("--dry-run-format", "--plan-format", type=click.Choice(["text", "json"]), default="text")
@kaniko_table_options("build")
def build_command(**kw: Any) -> None:
    """Build an image from a Dockerfile."""
    opts = options_from_flags(kw)
    from kiln.engine.engine import run_build
    from kiln.progress import make_reporter

    reporter = make_reporter(opts.log_format, opts.verbosity)
    for notice in kaniko_notices(kw):
        reporter.warning(notice)
    from kiln.rootless import single_id_reason

    if (why := single_id_reason()) is not None:
        reporter.warning(f"building in a user namespace that maps one ID ({why}): files cannot be owned by any "
                         "other user or group; give this user subordinate IDs (/etc/subuid, /etc/subgid) for "
                         "images identical to root's")
    run_build(opts, reporter)




def _context_sub_path(context: str, sub: str) -> str:
    """kaniko's --context-sub-path for a directory context: the subdirectory is the context (a remote context
    takes it with it: see _remote_context)."""
    base = context.removeprefix("dir://")
    if context.startswith("tar://") or Path(base).is_file():
        raise NotSupportedYet("--context-sub-path", f"with a tarball context ({context})")
    if not Path(base).is_dir():
        raise UsageError(f"{context}: the build context is not a directory", "--context")
    if Path(sub).is_absolute():
        raise UsageError(f"{sub!r} must be relative to the context", "--context-sub-path")
    root = Path(base).resolve()
    path = (root / sub).resolve()
    if path != root and root not in path.parents:
        raise UsageError(f"{sub!r} leaves the context", "--context-sub-path")
    if not path.is_dir():
        raise UsageError(f"{sub!r} is not a directory in the context {context}", "--context-sub-path")
    return str(path)


def _remote_context(context: str, git: GitOptions | None, sub: str | None) -> str:
    """A remote context with kaniko's --git options and --context-sub-path, fetched when the build opens it."""
    from kiln.context.opener import ContextSpec

    if sub is not None:
        sub = sub.strip()
        if Path(sub).is_absolute() or ".." in Path(sub).parts:
            raise UsageError(f"{sub!r} must be a path inside the context", "--context-sub-path")
    return ContextSpec(context, git, sub or None)


def _kiln_dir(kw: dict[str, Any]) -> Path | None:
    kiln_dir, kaniko_dir = kw["kiln_dir"], kw.get("kaniko_dir")
    if kiln_dir and kaniko_dir and Path(kiln_dir) != Path(kaniko_dir):
        raise UsageError("--kaniko-dir and --kiln-dir name different directories", "--kaniko-dir")
    # kaniko's KANIKO_DIR, below both flags; kiln's own KILN_DIR is default_kiln_dir's.
    env = os.environ.get("KANIKO_DIR")
    chosen = kiln_dir or kaniko_dir or (Path(env) if env and "KILN_DIR" not in os.environ else None)
    # Absolute: the sandbox hands paths under it to runc, which runs in another directory.
    return Path(chosen).absolute() if chosen else None


def _image_cache_ttl(kw: dict[str, Any]) -> float:
    from kiln.gotext import go_duration_flag
    from kiln.transports.imagecache import DEFAULT_TTL

    return go_duration_flag(kw["cache_ttl"], "--cache-ttl") if kw.get("cache_ttl") else DEFAULT_TTL


def _platforms(text: str | None, flag: str) -> tuple[Platform, ...]:
    """--platform's comma-separated list (BuildKit's form), each platform once."""
    if not text:
        return (Platform.host(),)
    found: list[Platform] = []
    for item in text.split(","):
        try:
            platform = Platform.parse(item)
        except UsageError as e:
            raise UsageError(e.msg, flag) from None
        if platform not in found:
            found.append(platform)
    return tuple(found)


def options_from_flags(kw: dict[str, Any]) -> BuildOptions:
    refuse_unsupported(kw)
    context = kw["context"] or kw["positional_context"] or "."
    if kw["context"] and kw["positional_context"] and kw["context"] != kw["positional_context"]:
        raise UsageError("give the context once: as --context or as the argument", "--context")
    if context == "-":
        context = "tar://stdin"
    # The context package is imported here, not with the module: `kiln --version` and `kiln diff` need none of it.
    from kiln.context.git import GitOptions
    from kiln.context.opener import is_remote_spec

    git = GitOptions.parse(kw["git"]) if kw.get("git") else None
    if is_remote_spec(context) and not Path(context).exists():
        context = _remote_context(context, git, kw.get("context_sub_path"))
    elif kw.get("context_sub_path"):
        context = _context_sub_path(context, kw["context_sub_path"])
    dockerfile = kw["dockerfile"]
    if dockerfile is None:
        dockerfile = "Dockerfile"
    platform_text = kw["custom_platform"] or kw["docker_platform"]
    if kw["custom_platform"] and kw["docker_platform"] and kw["custom_platform"] != kw["docker_platform"]:
        raise UsageError("--platform and --custom-platform disagree", "--platform")
    platforms = _platforms(platform_text, "--custom-platform" if kw["custom_platform"] else "--platform")
    args = build_args(kw["build_arg"])
    # BuildKit's SOURCE_DATE_EPOCH: a build argument (what buildx passes), else kiln's own environment.
    epoch, flag = (args["SOURCE_DATE_EPOCH"], "--build-arg") if "SOURCE_DATE_EPOCH" in args else (
        os.environ.get("SOURCE_DATE_EPOCH"), None)
    try:
        source_date_epoch = int(epoch) if epoch else None
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, got {epoch!r}", flag) from None
    registry = registry_settings(
        kw,
        ignore_immutable_tag_errors=bool(kw.get("push_ignore_immutable_tag_errors")),
        image_cache_dir=str(kw["cache_dir"]) if kw.get("cache_dir") else None,
        image_cache_ttl=_image_cache_ttl(kw),
    )
    compression_level = kw["compression_level"]
    if compression_level is not None and compression_level < 0:
        if compression_level != -1:
            raise UsageError(f"{compression_level} is not a level (-1 means the default)", "--compression-level")
        compression_level = None  # kaniko's -1: the compressor's default
    no_push = kw["no_push"]
    if "KANIKO_NO_PUSH" in os.environ:  # the fork's: the variable wins over the flag
        no_push = go_bool(os.environ["KANIKO_NO_PUSH"], "KANIKO_NO_PUSH")
    opts = BuildOptions(
        context=context,
        dockerfile=dockerfile,
        destinations=tuple(kw["destination"]),
        build_args=args,
        target=kw["target"],
        labels=pairs(kw["label"], "--label"),
        annotations=pairs(kw.get("annotation") or (), "--annotation"),
        tar_path=kw["tar_path"],
        oci_layout_path=kw["oci_layout_path"],
        no_push=no_push,
        digest_file=kw["digest_file"],
        image_name_with_digest_file=kw["image_name_with_digest_file"],
        image_name_tag_with_digest_file=kw["image_name_tag_with_digest_file"],
        snapshot_mode=kw["snapshot_mode"],
        single_snapshot=kw["single_snapshot"],
        reproducible=kw["reproducible"],
        source_date_epoch=source_date_epoch,
        cache=kw["cache"],
        cache_repo=kw["cache_repo"],
        no_push_cache=bool(kw.get("no_push_cache")),
        cache_ttl=kw["cache_ttl"],
        cache_copy_layers=kw["cache_copy_layers"],
        cache_run_layers=kw["cache_run_layers"],
        registry=registry,
        platforms=platforms,
        jobs=kw.get("jobs"),
        ignore_paths=tuple(kw["ignore_path"]),
        ignore_var_run=kw["ignore_var_run"],
        compression=kw["compression"],
        compression_level=compression_level,
        manifest_format=kw["manifest_format"],
        cleanup=kw["cleanup"],
        verbosity=kw["verbosity"],
        log_format=kw["log_format"],
        build_contexts=pairs(kw["build_context"], "--build-context"),
        secrets=tuple(kw["secret"]),
        ssh=tuple(kw["ssh"]),
        in_place=kw["in_place"],
        pre_cleanup=bool(kw.get("pre_cleanup")),
        materialize=bool(kw.get("materialize")),
        network=kw["network"],
        allow=tuple(a for value in kw["allow"] for a in value.split(",") if a),
        dry_run=kw["dry_run"],
        dry_run_format=kw["dry_run_format"],
        **({"kiln_dir": kiln_dir} if (kiln_dir := _kiln_dir(kw)) else {}),
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
        args = rewrite_go_bools(args)
        if args[:1] == ["build"] and not {"--dry-run", "--help", "-h"} & set(args):
            from kiln import rootless

            if rootless.needs_own_namespace():
                # An ordinary user builds as root of a user namespace of kiln's own (kiln.rootless).
                return rootless.run_in_own_namespace([sys.executable, "-m", "kiln", *args])
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
