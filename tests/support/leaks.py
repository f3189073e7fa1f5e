"""What a build left, read independently of kiln: the files its layers hold, and where secret bytes turn up."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Iterable
from pathlib import Path

from support.images import normalise_tar_name, open_layer, read_manifest


def built_files(layout: Path, tag: str, skip_layers: int = 0) -> dict[str, bytes]:
    """The regular files of an image's layers (the first `skip_layers` left out: a big base), each the topmost
    layer's version."""
    files: dict[str, bytes] = {}
    for descriptor in read_manifest(layout, tag)["layers"][skip_layers:]:
        with open_layer(layout, descriptor) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                member = tar.extractfile(info) if info.isfile() else None
                if member is not None:
                    files[normalise_tar_name(info.name)] = member.read()
    return files


def files_under(files: dict[str, bytes], prefix: str) -> dict[str, str]:
    """The files below `prefix`, relative to it, .git left out."""
    return {name[len(prefix) + 1:]: data.decode() for name, data in files.items()
            if name.startswith(prefix + "/") and not name.startswith(prefix + "/.git/")}


def found_in(texts: Iterable[str], trees: Iterable[Path], needles: list[bytes],
             skip_names: frozenset[str] = frozenset()) -> list[str]:  # fmt: skip
    """Where any of `needles` is: in `texts` (a build's output), or in a file below `trees` (gzip files
    decompressed; files named in `skip_names`, e.g. a base image's blobs made before the test, not read)."""
    hits = [f"output: {n!r}" for n in needles for text in texts if n in text.encode()]
    for top in trees:
        for file in top.rglob("*"):
            if file.name in skip_names or not file.is_file() or file.is_symlink():
                continue
            data = file.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            hits += [f"{file}: {n!r}" for n in needles if n in data]
    return hits
