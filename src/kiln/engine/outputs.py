"""Where a built image goes: an OCI layout, a docker-archive tarball, registries, and the digest files."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from kiln.atomic import write_atomically
from kiln.engine.events import BuildEvents
from kiln.engine.options import BuildOptions
from kiln.errors import UsageError
from kiln.transports.address import ImageAddress, save_image
from kiln.transports.image import Built
from kiln.transports.registry.reference import Reference


def _layout_tag(reference: str) -> str | None:
    """The tag a destination names (the default "latest" included); None when it is pinned by digest."""
    ref = Reference.parse(reference)
    return ref.tag if ref.digest is None else None


def _name_as_written(reference: str) -> str:
    """A destination as the user wrote it, less its tag and digest (what the image-name digest file holds)."""
    name = reference.split("@", 1)[0]
    tag = Reference.parse(reference).tag
    return name[: -len(tag) - 1] if tag and name.endswith(":" + tag) else name


def check_output_paths(opts: BuildOptions) -> None:
    """Refuse, before anything is built, outputs that could not be written: a layout path that is a file, an
    archive or digest file path that is a directory, a parent that is not a directory or not writable."""
    wanted: list[tuple[Path | None, str, bool]] = [
        (opts.oci_layout_path, "--oci-layout-path", True),
        (opts.tar_path, "--tar-path", False),
        (opts.digest_file, "--digest-file", False),
        (opts.image_name_with_digest_file, "--image-name-with-digest-file", False),
        (opts.image_name_tag_with_digest_file, "--image-name-tag-with-digest-file", False),
    ]
    for path, flag, is_dir in wanted:
        if path is None:
            continue
        if path.exists() and path.is_dir() != is_dir:
            raise UsageError(f"{path} is {'a file' if path.is_file() else 'a directory'}; "
                             f"{flag} needs {'a directory' if is_dir else 'a file'}", flag)
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"{parent} is not a directory, so {path} cannot be written", flag)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"{parent} is not writable, so {path} cannot be written", flag)


def _write_small(path: Path, data: bytes) -> None:
    """A digest file, written atomically; but a file something else mounted (kaniko's documented
    --digest-file=/dev/termination-log, bind-mounted by the kubelet) cannot be replaced by a rename (EBUSY),
    and is written in place, as kaniko does."""
    try:
        write_atomically(path, data)
    except OSError as e:
        if e.errno not in (errno.EBUSY, errno.EXDEV) or not path.is_file():
            raise
        with open(path, "r+b") as f:
            f.truncate(0)
            f.write(data)


def write_outputs(image: Built, opts: BuildOptions, reporter: BuildEvents) -> list[str]:
    done: list[str] = []
    if opts.oci_layout_path is not None:
        # Tagged after the first destination, else "latest".
        tag = _layout_tag(opts.destinations[0]) if opts.destinations else None
        address = ImageAddress.layout(opts.oci_layout_path, tag)
        done.append(str(save_image(address, image, [])))
    if opts.tar_path is not None:
        address = ImageAddress.archive(opts.tar_path)
        done.append(str(save_image(address, image, list(opts.destinations))))
    pushed: list[str] = []
    if opts.destinations and not opts.no_push:
        from kiln.transports.registry import push_image, registry_options

        started = time.monotonic()
        # All destinations in one push: blobs go up once per registry, not once per tag.
        push_image(image, list(opts.destinations), registry_options(opts.registry, pull=False),
                   warn=reporter.warning)
        reporter.phase("push", time.monotonic() - started, None, destinations=len(opts.destinations))
        pushed = list(opts.destinations)
        done.extend(f"pushed {d}" for d in pushed)
    digest = image.digest
    if opts.digest_file is not None:
        _write_small(opts.digest_file, digest.encode())
    names = pushed or list(opts.destinations)
    if opts.image_name_with_digest_file is not None:
        lines = [f"{_name_as_written(d)}@{digest}" for d in names]
        _write_small(opts.image_name_with_digest_file, "".join(line + "\n" for line in lines).encode())
    if opts.image_name_tag_with_digest_file is not None:
        lines = [f"{d.split('@')[0]}@{digest}" for d in names]
        _write_small(opts.image_name_tag_with_digest_file, "".join(line + "\n" for line in lines).encode())
    return done

