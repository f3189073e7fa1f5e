"""`kiln manifest create LIST IMAGE...` and `kiln manifest push LIST DEST`: images built elsewhere (each platform
on its own native runner, a common CI pattern) joined into one index, or one index copied whole.

The spelling is docker's and buildah's (`docker manifest create LIST IMAGE...`, `buildah manifest push LIST
DEST`), so their users' scripts read the same. kiln keeps no local image store, so LIST is where the index goes,
written at once: an OCI layout (`oci-layout://PATH[:TAG]`, docker's and buildah's local list, which `kiln
manifest push` then copies to a registry) or a registry reference (one step, as `buildx imagetools create` and
`manifest-tool push from-args` do).

Each IMAGE is any address `kiln diff` and FROM take; an index among them gives all its images (attestations
left out). An image's platform is its index entry's, or its config's. Two images for one platform is an error
naming both. Blobs go where the index goes: into the layout, or pushed to the repository (mounted when they
come from another repository of the same registry, uploaded from wherever they are otherwise).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from kiln.cli_flags import registry_settings, shared_registry_flags
from kiln.errors import UsageError
from kiln.oci import mediatypes as mt
from kiln.oci.descriptor import is_attestation
from kiln.oci.manifest import Index
from kiln.oci.platform import Platform
from kiln.transports.address import ImageAddress, entry_address, open_image, read_index, save_image
from kiln.transports.blobstore import BlobStore
from kiln.transports.image import Image, ImageIndex
from kiln.transports.registry import RegistryOptions, registry_options
from kiln.transports.registry.push import push_image
from kiln.transports.registry.reference import Reference

_FORMATS = {"oci": False, "docker": True, "v2s2": True}  # docker (buildah's v2s2): a Docker manifest list


@dataclass(frozen=True)
class Member:
    """One image of the index to be: where it came from (as shown in messages) and the platform it serves."""

    image: Image
    platform: Platform
    source: str


class Members:
    """The images gathered so far, one per platform."""

    def __init__(self) -> None:
        self.by_platform: dict[Platform, Member] = {}

    def add(self, member: Member) -> None:
        key = member.platform.normal()
        first = self.by_platform.get(key)
        if first is None:
            self.by_platform[key] = member
        elif first.image.digest != member.image.digest:  # the same image named twice is harmless
            raise UsageError(f"two images for {key}: {first.source} and {member.source}", "IMAGE")

    def all(self) -> list[Member]:
        return list(self.by_platform.values())


def gather(names: Sequence[str], blobs: BlobStore, opts: RegistryOptions, say: Callable[[str], None]) -> list[Member]:
    """Open every image the inputs name (an index: each of its images), each with its platform."""
    members = Members()
    for name in names:
        address = ImageAddress.parse(name, "IMAGE")
        index = read_index(address, opts)
        if index is None:
            image = open_image(address, blobs, Platform.host(), opts)
            if not (image.config.os and image.config.architecture):
                raise UsageError(f"{name}: its config names no platform (os and architecture)", "IMAGE")
            members.add(Member(image, image.config.platform, name))
            continue
        for member in _index_members(address, index, blobs, opts, say):
            members.add(member)
    return members.all()


def _index_members(address: ImageAddress, index: Index, blobs: BlobStore, opts: RegistryOptions,
                   say: Callable[[str], None]) -> list[Member]:
    out = []
    for desc in index.manifests:
        if is_attestation(desc):
            say(f"{address}: attestation {desc.digest} left out")
            continue
        if desc.media_type in mt.INDEX_TYPES:
            raise UsageError(f"{address}: entry {desc.digest} is itself an index: name it as an input", "IMAGE")
        entry = entry_address(address, desc.digest)
        image = open_image(entry, blobs, Platform.host(), opts)
        platform = desc.platform or (image.config.platform if image.config.architecture else None)
        if platform is None:
            raise UsageError(f"{entry}: neither its index entry nor its config names a platform", "IMAGE")
        out.append(Member(image, platform, str(entry)))
    return out


def join(members: Sequence[Member], fmt: str | None) -> ImageIndex:
    """The index of `members`, in the order given, each entry with its platform. Images are not converted (their
    digests are what was built), so a Docker manifest list holds only Docker images; by default the index is a
    Docker list when every image is a Docker image, else an OCI index."""
    dockers = [mt.is_docker_family(m.image.manifest.media_type) for m in members]
    docker = _FORMATS[fmt] if fmt else all(dockers)
    if docker:
        for m, is_docker in zip(members, dockers, strict=True):
            if not is_docker:
                raise UsageError(f"{m.source} is an OCI image, which a Docker manifest list cannot hold (give "
                                 f"--format oci, or build it with --format docker)", "--format")
    entries = tuple(replace(m.image.descriptor(), platform=m.platform) for m in members)
    index = Index(entries, mt.index_media_type(docker))
    return ImageIndex(index, index.to_bytes(), tuple(m.image for m in members))


def destination(text: str, flag: str) -> ImageAddress:
    """Where an index can go, checked before any image is opened."""
    address = ImageAddress.parse(text, flag)
    if address.transport == "docker-archive":
        raise UsageError(f"{text}: a docker-archive holds one image, not an index (use oci-layout:// or a "
                         f"registry)", flag)
    if address.transport == "registry":
        ref = Reference.parse(address.location)
        if ref.digest:
            raise UsageError(f"{text}: names a digest; an index is pushed under a tag", flag)
    return address


def write(built: ImageIndex, dest: ImageAddress, opts: RegistryOptions, warn: Callable[[str], None]) -> str:
    """Put the index and its images at `dest`; returns where it went. A layout this made is removed again when
    writing fails (a layout that was there keeps its index.json: the layout writer replaces it last)."""
    if dest.transport == "registry":
        push_image(built, [dest.location], opts, warn=warn)
        return dest.location
    layout = Path(dest.location)
    existed = layout.exists()
    try:
        return str(save_image(dest, built, []))
    except BaseException:
        if not existed:
            shutil.rmtree(layout, ignore_errors=True)
        raise


def make_index(list_name: str, flag: str, images: Sequence[str], fmt: str | None, kw: dict[str, Any]) -> None:
    dest = destination(list_name, flag)
    settings = registry_settings(kw)
    say: Callable[[str], None] = lambda line: click.echo(line, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="kiln-manifest-", ignore_cleanup_errors=True) as scratch:
        members = gather(images, BlobStore(Path(scratch) / "blobs"), registry_options(settings, pull=True), say)
        built = join(members, fmt)
        where = write(built, dest, registry_options(settings, pull=False), say)
    kind = "Docker manifest list" if built.index.media_type == mt.DOCKER_MANIFEST_LIST else "OCI index"
    platforms = ", ".join(str(m.platform) for m in members)
    say(f"{where}: {kind} of {len(members)} image{'s' if len(members) != 1 else ''} ({platforms})")
    click.echo(built.digest)


def _registry_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    f = shared_registry_flags(f)
    f = click.option("--skip-tls-verify", is_flag=True, help="Do not verify any registry's certificate.")(f)
    return click.option("--insecure", is_flag=True, help="Reach every registry over plain HTTP.")(f)


_FORMAT = click.option("--format", "fmt", type=click.Choice(sorted(_FORMATS)), default=None,
                       help="oci: an OCI index; docker (v2s2): a Docker manifest list. Default: docker when every "
                            "image is a Docker image, else oci.")


@click.group("manifest", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def manifest_command() -> None:
    """Join images built elsewhere into one multi-platform index (as `docker manifest` and `buildah manifest`)."""


@manifest_command.command("create")
@click.argument("list_name", metavar="LIST")
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True)
@_FORMAT
@_registry_flags
def create_command(list_name: str, images: tuple[str, ...], fmt: str | None, **kw: Any) -> None:
    """Write an index of IMAGEs to LIST: oci-layout://PATH[:TAG] or a registry reference (pushed there, blobs
    included). Each IMAGE is oci-layout://PATH[:TAG], docker-archive://PATH, docker://REF or REF; an index gives
    all its images. Prints the index's digest."""
    make_index(list_name, "LIST", images, fmt, kw)


@manifest_command.command("push")
@click.argument("list_name", metavar="LIST")
@click.argument("dest", metavar="DEST")
@_FORMAT
@_registry_flags
def push_command(list_name: str, dest: str, fmt: str | None, **kw: Any) -> None:
    """Copy the index LIST (as `kiln manifest create` wrote it to a layout, or any index) with every image it
    holds to DEST, a registry reference or a layout. Prints the index's digest."""
    make_index(dest, "DEST", [list_name], fmt, kw)
