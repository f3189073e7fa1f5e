"""Tiny images written by hand (tarfile + JSON), so every expected difference is known by construction.

Nothing here uses kiln: layers are tars made with the standard library, the layout and archive JSON are
written field by field from the OCI image-layout spec and Docker's `docker save` format.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class E:
    """One layer entry: kind is file, dir, symlink, hardlink, char, block, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    mtime: int = 1_700_000_000
    xattrs: dict[str, bytes] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE,
}  # fmt: skip


def layer_tar(entries: list[E]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type = _TYPES[e.kind]
            info.mode = e.mode if e.kind != "dir" or e.mode != 0o644 else 0o755
            info.uid, info.gid, info.mtime = e.uid, e.gid, e.mtime
            info.linkname = e.link
            info.devmajor, info.devminor = e.dev
            if e.xattrs:
                info.pax_headers = {
                    "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in e.xattrs.items()
                }
            if e.kind == "file":
                info.size = len(e.data)
                tf.addfile(info, io.BytesIO(e.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def d(name: str, mode: int = 0o755, **kw: Any) -> E:
    return E(name, "dir", mode=mode, **kw)


def f(name: str, data: bytes = b"", mode: int = 0o644, **kw: Any) -> E:
    return E(name, "file", data=data, mode=mode, **kw)


def config_json(layers: list[bytes], container: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "architecture": top.get("architecture", "amd64"),
        "os": top.get("os", "linux"),
        "config": container or {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]},
        "history": [{"created_by": "handmade"} for _ in layers],
    }


def _put_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha256:" + digest, len(data)


def write_layout(
    layout: Path,
    layers: list[list[E]],
    container: dict[str, Any] | None = None,
    *,
    tag: str = "latest",
    gzip_layers: bool = True,
    **top: Any,
) -> str:
    """An OCI layout with one image tagged ``tag``; returns the kiln diff spec ``oci-layout:PATH:TAG``."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    tars = [layer_tar(entries) for entries in layers]
    descs = []
    for t in tars:
        blob = gzip.compress(t, mtime=0) if gzip_layers else t
        digest, size = _put_blob(layout, blob)
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descs.append({"mediaType": media, "digest": digest, "size": size})
    cfg_digest, cfg_size = _put_blob(layout, json.dumps(config_json(tars, container, **top)).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
        "layers": descs,
    }
    m_digest, m_size = _put_blob(layout, json.dumps(manifest).encode())
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest,
            "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }
    )
    index_path.write_text(json.dumps(index))
    return f"oci-layout:{layout}:{tag}"


def write_archive(path: Path, layers: list[list[E]], container: dict[str, Any] | None = None) -> str:
    """A docker-archive (`docker save` layout: manifest.json, <id>.json, <layer>/layer.tar); returns its spec."""
    tars = [layer_tar(entries) for entries in layers]
    config = json.dumps(config_json(tars, container)).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members: list[tuple[str, bytes]] = [(config_name, config)]
    layer_names = []
    for t in tars:
        name = hashlib.sha256(t).hexdigest() + "/layer.tar"
        layer_names.append(name)
        members.append((name, t))
    manifest = [{"Config": config_name, "RepoTags": ["handmade:latest"], "Layers": layer_names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return f"docker-archive:{path}"


BASE = [d("etc"), f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), d("bin"), f("bin/tool", b"#!/bin/sh\n", 0o755)]
