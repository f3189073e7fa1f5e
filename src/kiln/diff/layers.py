"""The names in each layer's tar, whiteouts included: what ``--layers`` compares."""

from __future__ import annotations

import tarfile

from kiln.errors import ImageFormatError
from kiln.layers.compress import open_decompressed
from kiln.transports.image import Image


def _normal(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def layer_names(image: Image) -> list[tuple[str, ...]]:
    """For each layer, base first, the sorted paths of its entries ("/a/b", "/a/.wh.c"); the root entry left out."""
    out: list[tuple[str, ...]] = []
    for i, desc in enumerate(image.layers, start=1):
        names: set[str] = set()
        try:
            with image.blobs.open_blob(desc) as blob:
                stream = open_decompressed(blob)
                with tarfile.open(None, "r|", stream, errors="surrogateescape") as tf:
                    for info in tf:
                        name = _normal(info.name)
                        if name != "/":
                            names.add(name)
        except tarfile.TarError as e:
            raise ImageFormatError(f"layer {i} ({desc.digest}): {e}") from None
        out.append(tuple(sorted(names)))
    return out
