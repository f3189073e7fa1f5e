"""Where a built image goes: an OCI layout, a docker-archive tarball, registries, and the digest files."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from kiln.options import BuildOptions
from kiln.progress import Reporter
from kiln.transports.image import Image


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _tag_of(reference: str) -> str | None:
    name = reference.rsplit("/", 1)[-1]
    if "@" in name:
        return None
    _, sep, tag = name.partition(":")
    return tag if sep else "latest"


def write_outputs(image: Image, opts: BuildOptions, reporter: Reporter) -> list[str]:
    done: list[str] = []
    if opts.oci_layout_path is not None:
        from kiln.transports.layout import write_image

        # Tagged after the first destination, else "latest", so that tools needing a tag (umoci) can read it.
        tag = (_tag_of(opts.destinations[0]) if opts.destinations else None) or "latest"
        write_image(opts.oci_layout_path, image, tag)
        done.append(f"oci-layout:{opts.oci_layout_path}" + (f":{tag}" if tag else ""))
    if opts.tar_path is not None:
        from kiln.transports.archive import write_archive

        write_archive(opts.tar_path, image, [d for d in opts.destinations if "@" not in d])
        done.append(f"docker-archive:{opts.tar_path}")
    pushed: list[str] = []
    if opts.destinations and not opts.no_push:
        from kiln.transports.registry import push_image, registry_options

        started = time.monotonic()
        push_image(image, list(opts.destinations), registry_options(opts.registry, pull=False))
        reporter.phase("push", time.monotonic() - started, None, destinations=len(opts.destinations))
        pushed = list(opts.destinations)
        done.extend(f"pushed {d}" for d in pushed)
    digest = image.digest
    if opts.digest_file is not None:
        write_atomically(opts.digest_file, digest)
    names = pushed or list(opts.destinations)
    if opts.image_name_with_digest_file is not None:
        lines = [f"{d.split('@')[0].rsplit(':', 1)[0] if _has_tag(d) else d.split('@')[0]}@{digest}" for d in names]
        write_atomically(opts.image_name_with_digest_file, "".join(line + "\n" for line in lines))
    if opts.image_name_tag_with_digest_file is not None:
        lines = [f"{d.split('@')[0]}@{digest}" for d in names]
        write_atomically(opts.image_name_tag_with_digest_file, "".join(line + "\n" for line in lines))
    return done


def _has_tag(reference: str) -> bool:
    return ":" in reference.split("@")[0].rsplit("/", 1)[-1]
