"""Every flag of kaniko's executor and warmer (kaniko 1.24 and the maintained fork, osscontainertools/kaniko), and
what kiln does with it: the one table that the command line's notices and refusals and docs/kaniko-flags.md are
made from, so that the documentation cannot drift from the behaviour.

A flag is one of:
  implemented  kiln does what kaniko does (the click option is written out in cli.py / warm_cli.py)
  mapped       kiln does it under a name of its own (the kaniko spelling is accepted and means that)
  notice       meaningless for kiln: accepted, and a one-line warning says what kiln does instead
  refused      a capability kiln lacks: accepted by the parser, then refused with NotSupportedYet (exit 2)

``python -m kiln.kaniko_flags`` prints docs/kaniko-flags.md; a test fails when the committed file differs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

Handling = Literal["implemented", "mapped", "notice", "refused"]
Origin = Literal["both", "kaniko", "fork"]  # kaniko 1.24 and the fork, kaniko 1.24 only, the fork only
Takes = Literal["bool", "value", "values"]  # a boolean, one value, a repeatable value
Command = Literal["build", "warm"]


@dataclass(frozen=True)
class KanikoFlag:
    name: str  # the long spelling, with its dashes
    takes: Takes
    handling: Handling
    kiln: str  # what kiln does: for a notice, the notice itself; for a refusal, what is not supported yet
    origin: Origin = "both"
    short: str | None = None
    alias_of: str | None = None  # a deprecated spelling kaniko still registers, parsed as that flag
    default: bool = False  # a boolean's default in kaniko
    example: str = "x"  # a value that parses, for the test that gives every flag
    command: Command = "build"

    @property
    def dest(self) -> str:
        """The keyword click gives the option's value under."""
        return self.name.lstrip("-").replace("-", "_").lower()


def _f(name: str, takes: Takes, handling: Handling, kiln: str, **kw: object) -> KanikoFlag:
    return KanikoFlag(name, takes, handling, kiln, **kw)  # type: ignore[arg-type]


# kaniko's executor, in the order kaniko registers its flags.
EXECUTOR: tuple[KanikoFlag, ...] = (
    _f("--verbosity", "value", "implemented", "log level (panic, fatal, error, warn, info, debug, trace)",
       short="-v", example="info"),
    _f("--log-format", "value", "implemented", "text, color or json (one JSON event per line); kiln adds auto",
       example="text"),
    _f("--log-timestamp", "bool", "notice",
       "kiln's text output carries no timestamps; with --log-format=json every event has its time"),
    _f("--force", "bool", "notice",
       "kiln needs no container to build in (RUN steps run in a sandbox of their own); there is nothing to force"),
    _f("--dockerfile", "value", "implemented", "the Dockerfile, looked up in the context first, then from the "
       "working directory; - reads standard input", short="-f", example="Dockerfile"),
    _f("--context", "value", "implemented", "a directory (PATH, dir://PATH), a tarball (PATH, tar://PATH, "
       "tar://stdin, or an http(s):// URL), or a git repository: kaniko's git://HOST/REPO[#REF[#COMMIT]] (over "
       "https; http with GIT_PULL_METHOD=http) and BuildKit's https://HOST/REPO.git#REF:DIR and "
       "git@HOST:REPO.git#REF:DIR; s3:// and gs:// buckets: not supported yet",
       short="-c", example="."),
    _f("--context-sub-path", "value", "implemented", "a subdirectory of a directory or git context becomes "
       "the context; with a tarball context: not supported yet", example="."),
    _f("--bucket", "value", "refused", "build contexts in a GCS bucket", short="-b"),
    _f("--destination", "values", "implemented", "an image reference to push to (repeatable)", short="-d",
       example="registry.invalid/app:1"),
    _f("--snapshot-mode", "value", "implemented", "full, redo or time walk the tree as kaniko does; kiln's "
       "default, auto, reads an overlay upper dir where the kernel allows it (overlay asks for it)",
       example="redo"),
    _f("--custom-platform", "value", "implemented", "the platforms to build for (os/arch[/variant], "
       "comma-separated: several give one image each under an index)", example="linux/amd64,linux/arm64"),
    _f("--build-arg", "values", "implemented", "KEY=VALUE, or KEY to take the value from kiln's environment",
       example="A=1"),
    _f("--insecure", "bool", "implemented", "push over plain HTTP"),
    _f("--skip-tls-verify", "bool", "implemented", "push without verifying certificates"),
    _f("--insecure-pull", "bool", "implemented", "pull over plain HTTP"),
    _f("--skip-tls-verify-pull", "bool", "implemented", "pull without verifying certificates"),
    _f("--push-retry", "value", "implemented", "retries of a failed push (on top of kiln's retries of transient "
       "faults)", example="1"),
    _f("--push-ignore-immutable-tag-errors", "bool", "implemented", "a tag the registry refuses to overwrite "
       "because it is immutable (ECR's and Artifact Registry's messages) is left as it is, with a warning"),
    _f("--image-fs-extract-retry", "value", "notice", "kiln downloads and verifies every layer before extracting "
       "it (retried with --image-download-retry); extraction itself is not retried", example="1"),
    _f("--image-download-retry", "value", "implemented", "retries of a failed base-image download",
       example="1"),
    _f("--kaniko-dir", "value", "mapped", "--kiln-dir: kiln's work directory (blobs, layers, stage roots)",
       example="/tmp/kiln-flag-test"),
    _f("--tar-path", "value", "implemented", "write the image as a docker-archive tarball", example="out.tar"),
    _f("--single-snapshot", "bool", "implemented", "one layer for the whole target stage"),
    _f("--reproducible", "bool", "implemented", "timestamps pinned (epoch 0, or SOURCE_DATE_EPOCH)"),
    _f("--target", "value", "implemented", "the stage to build", example="base"),
    _f("--no-push", "bool", "implemented", "build without pushing to the destinations"),
    _f("--no-push-cache", "bool", "implemented", "the layer cache is read but not written"),
    _f("--cache-repo", "value", "implemented", "the layer cache's registry repository; oci:PATH keeps it in a "
       "local directory instead (kiln's own format: one JSON entry per key and a blobs/ store)",
       example="oci:/tmp/kiln-flag-test-cache"),
    _f("--cache-dir", "value", "implemented", "base images stored by kiln warm, looked in before any registry "
       "(a tag too, without asking the registry, while the entry is younger than --cache-ttl); only when given "
       "(kaniko looks in /cache by default)",
       example="/tmp/kiln-flag-test-images"),
    _f("--digest-file", "value", "implemented", "write the image's digest to this file", example="digest"),
    _f("--image-name-with-digest-file", "value", "implemented", "write DESTINATION@DIGEST lines to this file",
       example="names"),
    _f("--image-name-tag-with-digest-file", "value", "implemented", "write the destinations with tag and digest "
       "(JSON) to this file", example="tags"),
    _f("--oci-layout-path", "value", "implemented", "write the image into an OCI layout", example="layout"),
    _f("--compression", "value", "implemented", "gzip, zstd (kiln also: none)", example="gzip"),
    _f("--compression-level", "value", "implemented", "gzip 0-9, zstd 1-22; -1 means the default",
       example="-1"),
    _f("--cache", "bool", "implemented", "use the layer cache (--cache-repo, else <destination>/cache, else a "
       "local directory under --kiln-dir)"),
    _f("--compressed-caching", "bool", "notice", "kiln caches the compressed layer it made, once; there is no "
       "uncompressed variant to choose", default=True),
    _f("--pre-cleanup", "bool", "implemented", "in place, / is cleared of what an earlier build left before the "
       "first stage; other builds start in fresh directories of their own anyway", origin="fork"),
    _f("--cleanup", "bool", "implemented", "after the build, also remove the unpacked layers this build made "
       "under --kiln-dir (never those a concurrent build uses); in place, empty / of the build"),
    _f("--cache-ttl", "value", "implemented", "layer-cache and --cache-dir entries older than this Go duration "
       "are misses (default 336h)", example="6h"),
    _f("--insecure-registry", "values", "implemented", "a registry reached over plain HTTP (repeatable)",
       example="registry.invalid"),
    _f("--skip-tls-verify-registry", "values", "implemented", "a registry whose certificate is not verified "
       "(repeatable)", example="registry.invalid"),
    _f("--registry-certificate", "values", "implemented", "REGISTRY=CA_FILE", example="registry.invalid=ca.pem"),
    _f("--registry-client-cert", "values", "implemented", "REGISTRY=CERT,KEY for mutual TLS",
       example="registry.invalid=c.pem,k.pem"),
    _f("--registry-map", "values", "implemented", "ORIGINAL=MIRROR[;ORIGINAL=MIRROR...], kaniko's pairs (a "
       "bare ;MIRROR is one more for the registry before it)", example="index.docker.io=mirror.invalid"),
    _f("--registry-mirror", "values", "implemented", "a mirror of Docker Hub, tried in order",
       example="mirror.invalid"),
    _f("--skip-default-registry-fallback", "bool", "implemented", "do not fall back to Docker Hub when no "
       "mirror has the image"),
    _f("--ignore-var-run", "bool", "implemented", "leave /var/run out of snapshots in place (kiln's own roots "
       "never hold the host's /var/run)", default=True),
    _f("--label", "values", "implemented", "KEY=VALUE set on the image", example="a=b"),
    _f("--skip-unused-stages", "bool", "notice", "kiln always builds only the stages the target needs (kaniko's "
       "--skip-unused-stages=true); the others are never built"),
    _f("--use-new-run", "bool", "notice", "kiln has one RUN implementation: what a step changed comes from an "
       "overlay upper dir, or a walk of the tree with --snapshot-mode"),
    _f("--git", "value", "implemented", "options of a git:// context: branch=NAME (a branch or tag), depth=N "
       "(commits of history, default 1), recurse-submodules=BOOL, insecure-skip-tls=BOOL, single-branch=BOOL "
       "(kiln always fetches the one commit it builds)", example="branch=main"),
    _f("--cache-copy-layers", "bool", "implemented", "cache COPY/ADD layers too"),
    _f("--cache-run-layers", "bool", "implemented", "cache RUN layers", default=True),
    _f("--ignore-path", "values", "implemented", "a path left out of every snapshot (repeatable)",
       example="/var/cache"),
    _f("--force-build-metadata", "bool", "notice", "metadata instructions (ENV, LABEL, CMD...) are recorded in "
       "the history without layers, as BuildKit; there is nothing to force"),
    _f("--skip-push-permission-check", "bool", "notice", "kiln does not try a push before building; the push "
       "itself reports a refused permission"),
    _f("--annotation", "values", "implemented", "KEY=VALUE set on the image's manifest (OCI manifests only)",
       origin="fork", example="a=b"),
    _f("--preserve-context", "bool", "notice", "kiln never writes into nor removes the build context, in place "
       "too (it is left alone there like kiln's own files)", origin="fork"),
    _f("--materialize", "bool", "implemented", "in place, / holds the target stage's files after the build (the "
       "target is built last; not with --cleanup); other builds run in roots of kiln's own", origin="fork"),
    _f("--credential-helpers", "values", "refused", "kaniko's built-in credential helpers (env, google, ecr, acr, "
       "gitlab); kiln reads config.json's credHelpers and credsStore; an empty value asks for nothing",
       origin="fork", example="ecr"),
    # Deprecated spellings kaniko still registers.
    _f("--snapshotMode", "value", "implemented", "--snapshot-mode", alias_of="--snapshot-mode", example="redo"),
    _f("--customPlatform", "value", "implemented", "--custom-platform", alias_of="--custom-platform",
       example="linux/amd64"),
    _f("--tarPath", "value", "implemented", "--tar-path", alias_of="--tar-path", example="out.tar"),
    _f("--whitelist-var-run", "bool", "implemented", "--ignore-var-run", alias_of="--ignore-var-run",
       default=True),
)

# kaniko's warmer (kiln warm).
WARMER: tuple[KanikoFlag, ...] = tuple(
    KanikoFlag(f.name, f.takes, f.handling, f.kiln, short=f.short, example=f.example, alias_of=f.alias_of,
               command="warm")
    for f in (
        _f("--image", "values", "implemented", "an image to store (repeatable)", short="-i", example="busybox"),
        _f("--cache-dir", "value", "implemented", "where to store them (default /cache, as kaniko)", short="-c",
           example="/tmp/kiln-flag-test-images"),
        _f("--force", "bool", "implemented", "store again even when a fresh copy is there", short="-f"),
        _f("--cache-ttl", "value", "implemented", "a copy older than this is stored again", example="6h"),
        _f("--dockerfile", "value", "implemented", "store the images the Dockerfile's stages are built FROM "
           "(and COPY --from), its ARGs set by --build-arg", short="-d", example="Dockerfile"),
        _f("--build-arg", "values", "implemented", "KEY=VALUE for --dockerfile's ARGs", example="A=1"),
        _f("--customPlatform", "value", "implemented", "the platform to store (kiln also: --custom-platform)",
           alias_of="--custom-platform", example="linux/amd64"),
        _f("--insecure-pull", "bool", "implemented", "pull over plain HTTP"),
        _f("--skip-tls-verify-pull", "bool", "implemented", "pull without verifying certificates"),
        _f("--insecure-registry", "values", "implemented", "a registry reached over plain HTTP",
           example="registry.invalid"),
        _f("--skip-tls-verify-registry", "values", "implemented", "a registry whose certificate is not verified",
           example="registry.invalid"),
        _f("--registry-certificate", "values", "implemented", "REGISTRY=CA_FILE",
           example="registry.invalid=ca.pem"),
        _f("--registry-client-cert", "values", "implemented", "REGISTRY=CERT,KEY",
           example="registry.invalid=c.pem,k.pem"),
        _f("--registry-map", "values", "implemented", "ORIGINAL=MIRROR[;ORIGINAL=MIRROR...], as kiln build",
           example="index.docker.io=mirror.invalid"),
        _f("--registry-mirror", "values", "implemented", "a mirror of Docker Hub", example="mirror.invalid"),
        _f("--skip-default-registry-fallback", "bool", "implemented", "no fallback to Docker Hub"),
        _f("--verbosity", "value", "implemented", "log level", short="-v", example="info"),
        _f("--log-format", "value", "implemented", "text, color or json", example="text"),
        _f("--log-timestamp", "bool", "notice", "kiln's text output carries no timestamps; with "
           "--log-format=json every event has its time"),
    )
)

ALL: tuple[KanikoFlag, ...] = EXECUTOR + WARMER

# Environment variables kaniko reads as flags, and what kiln does with them (all implemented).
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("KANIKO_REGISTRY_MIRROR", "one more --registry-mirror (build and warm)"),
    ("KANIKO_REGISTRY_MAP", "one more --registry-map value (build and warm)"),
    ("KANIKO_NO_PUSH", "--no-push=VALUE (a Go boolean), over the flag (build; the fork's)"),
    ("KANIKO_DIR", "--kaniko-dir, when neither it nor --kiln-dir is given (build)"),
)


def flags_for(command: Command) -> tuple[KanikoFlag, ...]:
    return tuple(f for f in ALL if f.command == command)


def aliases_of(name: str, command: Command = "build") -> tuple[str, ...]:
    """The deprecated spellings that parse as ``name``."""
    return tuple(f.name for f in flags_for(command) if f.alias_of == name)


def bool_defaults(command: Command) -> dict[str, bool]:
    """Every boolean kaniko flag of a command (aliases included) with kaniko's default, for Go-style values."""
    return {f.name: f.default for f in flags_for(command) if f.takes == "bool"}


# -- the document ---------------------------------------------------------------------------------------------

_ORIGIN = {"both": "1.24, fork", "kaniko": "1.24", "fork": "fork"}
_WHAT = {"implemented": "implemented", "mapped": "mapped", "notice": "accepted, notice", "refused": "not supported yet"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _spelling(f: KanikoFlag) -> str:
    names = f"`{f.name}`" + (f", `{f.short}`" if f.short else "")
    arg = {"bool": "[=true\\|false]", "value": " VALUE", "values": " VALUE (repeatable)"}[f.takes]
    return names + arg


def _deprecated(f: KanikoFlag) -> bool:
    """A deprecated spelling of another flag (the warmer's --customPlatform is its own flag, kiln adds the
    other spelling)."""
    return f.alias_of is not None and f.kiln == f.alias_of


def _rows(flags: tuple[KanikoFlag, ...]) -> list[str]:
    rows = ["| flag | in kaniko | kiln | what kiln does |", "|---|---|---|---|"]
    for f in flags:
        what = f"deprecated spelling of `{f.alias_of}`" if _deprecated(f) else f.kiln
        handling = "deprecated spelling" if _deprecated(f) else _WHAT[f.handling]
        rows.append(f"| {_spelling(f)} | {_ORIGIN[f.origin]} | {handling} | {_cell(what)} |")
    return rows


def counts(flags: tuple[KanikoFlag, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in flags:
        key = "deprecated spellings" if _deprecated(f) else f.handling
        out[key] = out.get(key, 0) + 1
    return out


def render_markdown() -> str:
    ex = counts(EXECUTOR)
    lines = [
        "# kaniko's flags in kiln",
        "",
        "<!-- Generated by `python -m kiln.kaniko_flags > docs/kaniko-flags.md` from src/kiln/kaniko_flags.py;",
        "     tests/cli/test_kaniko_flags.py fails when this file differs. Do not edit by hand. -->",
        "",
        "Every flag of kaniko 1.24's executor and warmer and of the maintained fork (osscontainertools/kaniko), "
        "and what kiln does with it. *implemented*: what kaniko does; *mapped*: the same under a kiln name; "
        "*accepted, notice*: meaningless for kiln, accepted with a one-line warning saying what kiln does "
        "instead; *not supported yet*: a capability kiln lacks, refused with exit status 2 and one line naming "
        "the flag (a false boolean or an empty value asks for nothing and is accepted). Booleans take Go's "
        "`--flag=true|false` too.",
        "",
        f"## `kiln build` (kaniko's executor): {len(EXECUTOR)} spellings",
        "",
        ", ".join(f"{n} {k}" for k, n in sorted(ex.items())) + ".",
        "",
        *_rows(EXECUTOR),
        "",
        "## Environment",
        "",
        "| variable | what kiln does |",
        "|---|---|",
        *(f"| `{name}` | {_cell(what)} |" for name, what in ENVIRONMENT),
        "",
        f"## `kiln warm` (kaniko's warmer): {len(WARMER)} flags",
        "",
        "`kiln warm` stores each image as an OCI layout `CACHE_DIR/<manifest digest>/` (the fork's OCI warmer "
        "format) and records which reference and platform it was stored for under `CACHE_DIR/refs/`; "
        "`kiln build --cache-dir CACHE_DIR` looks there before any registry, by that record (no registry "
        "request) or by the reference's digest. A tag with no record is looked up as kaniko does: by the digest "
        "the registry says it names now, so directories filled by kaniko's warmers serve too (kaniko 1.24's "
        "tarball entries `CACHE_DIR/<digest>` included). An entry is fresh for `--cache-ttl` from the time it "
        "was stored. Writes are atomic: a build sharing the directory sees an image whole or not at all.",
        "",
        *_rows(WARMER),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
