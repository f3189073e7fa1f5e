"""buildah with storage of its own: a per-session root and runroot, never the host's default storage.

buildah's default OCI runtime on these machines is crun, which fails ("cgroups in hybrid mode not supported"),
so every command that runs containers gets --runtime /usr/sbin/runc. Base images in OCI layouts go through
oci_ref(), which gives buildah a path it can name the image after. The registries.conf written here has no
unqualified-search registries, so a short name can never reach Docker Hub.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from support.base_images import OciImage
from support.mounts import remove_tree, unmount_under
from support.procs import run

RUNC = "/usr/sbin/runc"
# Subcommands that start containers and so take --runtime.
_RUNTIME_COMMANDS = {"build", "bud", "run"}


class Buildah:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root = directory / "root"
        self.runroot = directory / "runroot"
        self.tmp = directory / "tmp"
        for d in (self.root, self.runroot, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        registries = directory / "registries.conf"
        registries.write_text('unqualified-search-registries = []\nshort-name-mode = "enforcing"\n')
        self.env = {
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "BUILDAH_RUNTIME": RUNC,
            "TMPDIR": str(self.tmp),
            "BUILDAH_LAYERS": "false",
        }
        self._built = 0

    def oci_ref(self, image: OciImage) -> str:
        """A reference to image that buildah accepts (use it in `from` and in FROM lines).

        buildah names an image pulled from oci:PATH after PATH, and rejects paths that are not valid image
        names (a '.cache' component, upper case); so it gets a symlink to the layout with a plain name.
        """
        links = self.directory / "layouts"
        links.mkdir(exist_ok=True)
        name = re.sub(r"[^a-z0-9]+", "-", image.layout.name.lower()).strip("-") or "image"
        link = links / f"{name}-{hashlib.sha256(str(image.layout).encode()).hexdigest()[:8]}"
        if not link.is_symlink():
            link.symlink_to(image.layout.resolve())
        return f"oci:{link}:{image.tag}"

    def argv(self, *args: str) -> list[str]:
        argv = ["buildah", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay"]
        if args and args[0] in _RUNTIME_COMMANDS:
            # --network=host for every command that runs something: kiln's RUN default too, and buildah's own
            # bridge would turn on the host's ip_forward (the session's untouched-host check reports it).
            network = [] if any(a.startswith("--network") for a in args) else ["--network=host"]
            return [*argv, args[0], "--runtime", RUNC, *network, *args[1:]]
        return [*argv, *args]

    def __call__(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `buildah ARGS` against this session's storage; raises ToolError with its output on failure."""
        return run(self.argv(*args), env=self.env, check=check, input=input, timeout=timeout)

    def build(
        self,
        context: Path,
        dockerfile: Path,
        out_layout: Path,
        *,
        tag: str = "latest",
        layers: bool = False,
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        extra: Sequence[str] = ("--tls-verify=false",),
    ) -> OciImage:
        """`buildah build` the context, then push the result to the OCI layout out_layout:tag.

        extra defaults to --tls-verify=false so FROM can name the plain-HTTP test registry; pass
        registry.tool_flags() (or add --cert-dir/--creds) for the TLS or auth registries.
        """
        self._built += 1
        iidfile = self.tmp / f"iid-{self._built}"
        argv = ["build", f"--layers={'true' if layers else 'false'}", "--format", "oci", "-f", str(dockerfile),
                "--iidfile", str(iidfile)]  # fmt: skip
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        if target:
            argv += ["--target", target]
        self(*argv, *extra, str(context))
        image_id = iidfile.read_text().strip().removeprefix("sha256:")
        out_layout.parent.mkdir(parents=True, exist_ok=True)
        self("push", "--quiet", image_id, f"oci:{out_layout}:{tag}")
        return OciImage(out_layout, tag)

    def cleanup(self) -> None:
        """Remove containers and images, unmount what buildah left mounted, delete the storage."""
        self("rm", "--all", check=False)
        self("rmi", "--all", "--force", check=False)
        unmount_under(self.directory)
        remove_tree(self.directory)
