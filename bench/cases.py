"""The benchmark cases: a Dockerfile, a context made for it, and the base images its FROM lines name.

FROM lines name bases as localhost/bench/<base> (see images.py): kiln is given each one with
`--build-context localhost/bench/<base>=oci-layout://...`, and buildah finds it in its storage under that name,
pulled and tagged before any run is timed.

Generated data is random (incompressible), so compression is measured on realistic bytes rather than zeros:
- the 20,000 files of one RUN come from one perl process (perl-base is in every Debian image) reading
  /dev/urandom, so the RUN measures the builder rather than 20,000 process start-ups;
- the 1 GiB file is `head -c 1G /dev/urandom`: since Linux 5.18 urandom is a ChaCha20 generator (the suite
  records its speed on this machine in the results; 500+ MB/s here), which keeps data generation to a couple
  of seconds of the case without shipping a tool into the image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.images import FILE_SIZE, write_random_files

FILES = 20_000
IN_PLACE_SUFFIX = "-inplace"
ROOTLESS_SUFFIX = "-rootless"

PERL_FILES = (
    "mkdir -p {root} && "
    'perl -e \'open(my $r, "<", "/dev/urandom") or die; '
    'for my $i (0..{n}-1) {{ my $d = sprintf("{root}/d%03d", int($i/512)); mkdir $d unless -d $d; '
    'read($r, my $b, {size}) == {size} or die; open(my $f, ">", sprintf("%s/f%05d", $d, $i)) or die; '
    "print $f $b; close $f }}'"
)


def perl_files(root: str, n: int, size: int = FILE_SIZE) -> str:
    return PERL_FILES.format(root=root, n=n, size=size)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    dockerfile: str
    bases: tuple[str, ...]
    make_context: Callable[[Path], None] = field(default=lambda ctx: None)
    heavy: bool = False
    """Takes a minute or more per run: the suite may use fewer repetitions for it."""
    kiln_flags: tuple[str, ...] = ()
    buildah_flags: tuple[str, ...] = ()
    needs_cache: bool = False
    """Only meaningful when kiln's build cache works (every step of the timed runs must report a cache hit)."""
    in_place: bool = False
    """kiln builds with --in-place (kaniko's way) in a throwaway root of its own (bench/inplace.py); buildah as in
    every case. Named after the namespaced case it mirrors, plus "-inplace" (and what else differs)."""
    image_usr: bool = False
    """In place: the root's /usr is the image's (the host's is bound aside), not the host's bound at /usr."""
    cold: bool = False
    """A CI build's start: every run on empty state (kiln: a fresh --kiln-dir; buildah: a fresh --root), the base
    pulled from a registry on 127.0.0.1 (bench/suite.py's base registry) instead of preloaded."""
    push: bool = True
    """The image goes to the bench's registry (False: both builders build it and leave it local)."""

    rootless: bool = False
    """kiln runs as the ordinary user kiln-rootless (scripts/install-deps.sh makes it), in a user namespace of its
    own; buildah as root, as in every case. Named after the case run as root, plus "-rootless"."""

    platforms: str | None = None
    """--platform for both builders (several: one index; buildah then builds into a manifest list and pushes it
    with every image); a foreign platform's RUN steps go through qemu-user (the suite registers aarch64)."""

    @property
    def kiln_args(self) -> tuple[str, ...]:
        return (*self.kiln_flags, "--platform", self.platforms) if self.platforms else self.kiln_flags

    @property
    def namespaced(self) -> str | None:
        """For an in-place or rootless case, the name of the case with the same Dockerfile built as root."""
        if self.in_place:
            return self.name.partition(IN_PLACE_SUFFIX)[0]
        return self.name.partition(ROOTLESS_SUFFIX)[0] if self.rootless else None


def _small_context(ctx: Path) -> None:
    (ctx / "app").mkdir()
    for i in range(20):
        (ctx / "app" / f"module{i}.sh").write_text(f"#!/bin/sh\necho module {i}\n" * 20)
    (ctx / "config.json").write_text('{"name": "bench", "workers": 4}\n')


SMALL = """\
FROM localhost/bench/busybox
ARG VERSION=1.0
ENV APP_HOME=/app VERSION=${VERSION}
LABEL org.opencontainers.image.title="kiln bench small" version=${VERSION}
WORKDIR /app
COPY app/ /app/
COPY config.json /etc/bench/config.json
RUN chmod +x /app/*.sh && echo "built ${VERSION}" > /app/BUILD \
    && echo "bench:x:1001:1001:bench:/app:/bin/sh" >> /etc/passwd
USER bench
EXPOSE 8080
CMD ["/app/module0.sh"]
"""


def _files_context(ctx: Path) -> None:
    write_random_files(ctx / "data", FILES, FILE_SIZE, seed=20_000)


# The directory goes and comes back: its layer holds an opaque whiteout and the new entries. (Not /etc: the
# step's /etc/hosts and /etc/resolv.conf are mount points, under every builder.)
ONE_RUN = "FROM localhost/bench/busybox\nRUN rm -rf /usr/bin && mkdir /usr/bin && ln -s /bin/busybox /usr/bin/env\n"

RUN_TRUE = "FROM localhost/bench/busybox\n" + "RUN true\n" * 10

TEN_RUNS = "".join(f"RUN echo 'setting {i}' >> /etc/bench.conf\n" for i in range(10))


MULTI_PLATFORM = "FROM localhost/bench/busybox-multi\n" + TEN_RUNS

MULTISTAGE = f"""\
FROM localhost/bench/debian AS left
RUN {perl_files("/out", 5000)}
RUN echo left > /out/NAME

FROM localhost/bench/debian AS right
RUN {perl_files("/out", 5000)}
RUN echo right > /out/NAME

FROM localhost/bench/busybox
COPY --from=left /out /left
COPY --from=right /out /right
"""


def _tenlayer_context(ctx: Path) -> None:
    (ctx / "app.txt").write_text("the app\n" * 100)


CASES: list[Case] = [
    Case("small", "busybox base, COPY x2, one RUN, metadata", SMALL, ("busybox",), _small_context),
    Case("files-run", f"{FILES:,} files of 10 KiB written by one RUN (debian)",
         f"FROM localhost/bench/debian\nRUN {perl_files('/data', FILES)}\n", ("debian",)),
    Case("files-copy", f"the same {FILES:,} files COPYed from the context (debian)",
         "FROM localhost/bench/debian\nCOPY data/ /data/\n", ("debian",), _files_context),
    Case("ten-runs-busybox", "ten RUNs changing one small file, on busybox: the fixed cost of a RUN step",
         "FROM localhost/bench/busybox\n" + TEN_RUNS, ("busybox",)),
    Case("ten-runs-debian", "ten RUNs changing one small file, on debian (reference for ten-runs-large)",
         "FROM localhost/bench/debian\n" + TEN_RUNS, ("debian",)),
    Case("ten-runs-busybox-inplace", "ten-runs-busybox with kiln --in-place in a throwaway root (kaniko's way)",
         "FROM localhost/bench/busybox\n" + TEN_RUNS, ("busybox",), in_place=True),
    Case("ten-runs-debian-inplace", "ten-runs-debian with kiln --in-place in a throwaway root (kaniko's way)",
         "FROM localhost/bench/debian\n" + TEN_RUNS, ("debian",), in_place=True),
    Case("ten-runs-debian-inplace-imageusr", "ten-runs-debian-inplace with debian's /usr laid out in the root "
         "(the host's bound aside), as in kaniko's FROM-scratch container",
         "FROM localhost/bench/debian\n" + TEN_RUNS, ("debian",), in_place=True, image_usr=True),
    Case("small-rootless", "small, with kiln run by an ordinary user (rootless)", SMALL, ("busybox",),
         _small_context, rootless=True),
    Case("ten-runs-debian-rootless", "ten-runs-debian, with kiln run by an ordinary user (rootless)",
         "FROM localhost/bench/debian\n" + TEN_RUNS, ("debian",), rootless=True),
    Case("ten-runs-large", "ten RUNs changing one small file, on debian + a 500 MiB layer of 51,200 files",
         "FROM localhost/bench/large\n" + TEN_RUNS, ("large",)),
    Case("multistage", "two independent stages of 5,000 files each, copied into a busybox stage",
         MULTISTAGE, ("debian", "busybox")),
    Case("ten-layers", "a base of 10 layers (busybox + 9 x 10 MiB), one COPY and one RUN",
         "FROM localhost/bench/tenlayer\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy.txt\n",
         ("tenlayer",), _tenlayer_context),
    Case("big-file", "one 1 GiB file of random bytes written by RUN (debian)",
         "FROM localhost/bench/debian\nRUN head -c 1G /dev/urandom > /big.bin\n", ("debian",), heavy=True),
    Case("big-file-local", "big-file, left local (no push): what making its layer costs, for the push line",
         "FROM localhost/bench/debian\nRUN head -c 1G /dev/urandom > /big.bin\n", ("debian",), heavy=True,
         push=False),
    Case("small-cold", "the small case from empty state, busybox pulled from the registry", SMALL, ("busybox",),
         _small_context, cold=True),
    Case("ten-runs-debian-cold", "ten-runs-debian from empty state, debian pulled from the registry",
         "FROM localhost/bench/debian\n" + TEN_RUNS, ("debian",), cold=True),
    Case("ten-layers-cold", "ten-layers from empty state, its 10 layers pulled from the registry",
         "FROM localhost/bench/tenlayer\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy.txt\n",
         ("tenlayer",), _tenlayer_context, cold=True),
    Case("ten-runs-large-cold", "ten-runs-large from empty state, debian + 500 MiB pulled from the registry",
         "FROM localhost/bench/large\n" + TEN_RUNS, ("large",), heavy=True, cold=True),
    # The two-platform build against the two single-platform builds it replaces (the report adds them up); from
    # empty state, so that both builders pull each platform's base as a CI build would.
    Case("two-platforms", "ten-runs-busybox for linux/amd64 and linux/arm64 (qemu) into one index, from empty "
         "state", MULTI_PLATFORM, ("busybox-multi",), cold=True, platforms="linux/amd64,linux/arm64"),
    Case("two-platforms-amd64", "two-platforms for linux/amd64 alone", MULTI_PLATFORM, ("busybox-multi",),
         cold=True, platforms="linux/amd64"),
    Case("two-platforms-arm64", "two-platforms for linux/arm64 alone (qemu)", MULTI_PLATFORM, ("busybox-multi",),
         cold=True, platforms="linux/arm64"),
    Case("one-run", "one RUN replacing a directory (/usr/bin) on busybox: the smallest build with a step",
         ONE_RUN, ("busybox",)),
    Case("run-true", "ten `RUN true` on busybox: the fixed cost of a RUN step (see the per-RUN line)",
         RUN_TRUE, ("busybox",)),
    Case("cached", "the small case rebuilt with every step cached (kiln --cache, buildah --layers)",
         SMALL, ("busybox",), _small_context, needs_cache=True,
         kiln_flags=("--cache", "--cache-copy-layers"), buildah_flags=("--layers=true",)),
]  # fmt: skip


def case_by_name(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(f"no case {name!r}; cases: {', '.join(c.name for c in CASES)}")
