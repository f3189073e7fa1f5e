"""The same Dockerfile built by kiln and by buildah gives the same files (paths, types, modes, owners,
contents, link targets) and the same config. buildah is an independent implementation, so a
difference points at one of the two; the message shows which paths or fields differ."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integ_helpers import Kiln, write_context

from support.base_images import OciImage
from support.buildah import Buildah
from support.images import assert_json_equal, assert_trees_equal, flatten_layout, read_config

pytestmark = [pytest.mark.root, pytest.mark.buildah]

# Paths a RUN sandbox provides or that builders legitimately treat differently (mount points, runtime files).
VOLATILE = {"/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/dev", "/proc", "/sys", "/run", "/var/cache/ldconfig"}
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
                 "StopSignal", "OnBuild", "Shell", "Healthcheck")  # fmt: skip


def _config_view(config: dict[str, Any]) -> dict[str, Any]:
    c = config.get("config", {})
    view = {k: c.get(k) or None for k in CONFIG_FIELDS}
    # buildah stamps its version as a label; kiln and BuildKit add PATH to a scratch image's Env.
    labels = {k: v for k, v in (view["Labels"] or {}).items() if k != "io.buildah.version"}
    view["Labels"] = labels or None
    view["Env"] = [e for e in (view["Env"] or []) if not e.startswith("PATH=")] or None
    return view


def _build_both(
    kiln: Kiln,
    buildah: Buildah,
    buildah_build: Callable[..., OciImage],
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str | bytes],
    bases: dict[str, OciImage],
    prepare: Callable[[Path], None] | None = None,
) -> tuple[Path, str, Path, str]:
    """Build `dockerfile` (FROM {name} placeholders for bases) with kiln and with buildah; return both images."""
    kiln.contexts.update(bases)
    ours = dockerfile.format(**{n: n for n in bases})
    kiln_ctx = write_context(tmp_path / "kiln-ctx", {"Dockerfile": ours, **files})
    buildah_refs = {n: buildah.oci_ref(img) for n, img in bases.items()}
    buildah_ctx = write_context(tmp_path / "buildah-ctx", {"Dockerfile": dockerfile.format(**buildah_refs), **files})
    if prepare:
        prepare(kiln_ctx)
        prepare(buildah_ctx)
    out = kiln.build(kiln_ctx).ok()
    theirs = buildah_build(buildah_ctx, buildah_ctx / "Dockerfile", tmp_path / "buildah-layout")
    return out.layout, out.tag, theirs.layout, theirs.tag


def _compare(
    tmp_path: Path, kiln_img: tuple[Path, str], buildah_img: tuple[Path, str], ignore: frozenset[str] = frozenset()
) -> None:
    ours = flatten_layout(*kiln_img, tmp_path)
    theirs = flatten_layout(*buildah_img, tmp_path)
    assert_trees_equal(theirs, ours, ignore_paths=VOLATILE | set(ignore))
    assert_json_equal(_config_view(read_config(*buildah_img)), _config_view(read_config(*kiln_img)))


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data, mode, uid in (
            ("pkg/bin/tool", b"#!/bin/sh\n", 0o755, 0),
            ("pkg/etc/conf", b"k=v\n", 0o640, 33),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SCRATCH_DOCKERFILE = """\
FROM scratch
COPY a.txt /a.txt
COPY a.txt /newdir/
COPY *.txt /txt/
COPY dir /d2
COPY --chown=1234:5678 dir /owned/
COPY --chmod=0640 run.sh /run-640.sh
COPY . /all/
ADD pkg.tar.gz /opt/
WORKDIR /app
ENV A=1 B="two words"
LABEL org.example.k="v" other="x y"
USER 1000:1000
EXPOSE 80 443/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
ENTRYPOINT ["/bin/app"]
CMD ["--help"]
"""


def test_scratch_copy_add_and_metadata_match_buildah(
    kiln: Kiln, buildah: Buildah, buildah_build: Callable[..., OciImage], tmp_path: Path
) -> None:
    files: dict[str, str | bytes] = {
        "a.txt": "alpha\n", "one.txt": "one\n", "run.sh": "#!/bin/sh\n", "dir/y": "y\n", "dir/sub/x": "x\n",
        "pkg.tar.gz": _archive(), ".dockerignore": "ignored*\n", "ignored.txt": "no\n",
    }  # fmt: skip

    def prepare(ctx: Path) -> None:
        os.chmod(ctx / "run.sh", 0o755)
        os.chmod(ctx / "dir/sub", 0o750)
        os.chown(ctx / "a.txt", 4321, 4321)

    kiln_img = _build_both(kiln, buildah, buildah_build, tmp_path, SCRATCH_DOCKERFILE, files, {}, prepare)
    _compare(tmp_path, kiln_img[:2], kiln_img[2:])


BUSYBOX_DOCKERFILE = """\
FROM {busybox}
RUN mkdir -p /work/d /work/e && echo one > /work/mod && echo x > /work/d/x && echo e > /work/e/old \\
 && echo h > /work/h1 && ln /work/h1 /work/h2 && ln -s h1 /work/sym && echo s > /work/suid && chmod 4755 /work/suid
RUN echo two > /work/mod && rm -r /work/e && mkdir /work/e && echo new > /work/e/new && rm /bin/vi
RUN echo 'kilngrp:x:4242:app' >> /etc/group
USER app
WORKDIR /home/app/made
RUN id > ids && touch mine
USER root
COPY --chown=app a.txt /home/app/a.txt
ENV GREETING=hello
CMD ["sh", "-c", "echo $GREETING"]
"""


def test_busybox_runs_match_buildah(
    kiln: Kiln, buildah: Buildah, buildah_build: Callable[..., OciImage], tmp_path: Path, busybox_image: OciImage
) -> None:
    kiln_img = _build_both(kiln, buildah, buildah_build, tmp_path, BUSYBOX_DOCKERFILE, {"a.txt": "a\n"},
                           {"busybox": busybox_image})  # fmt: skip
    _compare(tmp_path, kiln_img[:2], kiln_img[2:])


@pytest.mark.slow
def test_debian_runs_match_buildah(
    kiln: Kiln, buildah: Buildah, buildah_build: Callable[..., OciImage], tmp_path: Path, debian_image: OciImage
) -> None:
    dockerfile = (
        "FROM {debian}\n"
        "RUN useradd --create-home --uid 1500 bob && echo hi > /home/bob/hello && chown bob: /home/bob/hello\n"
        "RUN rm -rf /usr/share/doc/bash && ln -s /usr/bin/env /usr/local/bin/env2 && mkdir -m 2775 /srv/shared\n"
        "USER bob\n"
        "WORKDIR /home/bob/w\n"
        "RUN id > ids && echo $HOME > home\n"
    )
    kiln_img = _build_both(kiln, buildah, buildah_build, tmp_path, dockerfile, {}, {"debian": debian_image})
    # useradd stamps the day of the password change in /etc/shadow: the same day for both builds.
    _compare(tmp_path, kiln_img[:2], kiln_img[2:], ignore=frozenset({"/var/log/lastlog", "/var/log/faillog"}))
