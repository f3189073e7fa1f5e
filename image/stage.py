"""Stage the build context of kiln's own image: a self-contained Python with kiln, all under /kiln.

Run by scripts/image.sh with the repository's virtualenv Python (the interpreter that goes into the image):

    .venv/bin/python image/stage.py --repo REPO --out CONTEXT_DIR

CONTEXT_DIR receives image/Dockerfile and:
  kiln/bin/python3.X        the interpreter, ELF interpreter set to /kiln/lib/ld-linux-x86-64.so.2, rpath /kiln/lib
  kiln/lib/*.so*            every shared library `ldd` lists for the interpreter and the extension modules, and
                            the dynamic loader: nothing in the image depends on /lib or /usr
  kiln/lib/python3.X/       the standard library, trimmed (tests, idlelib, tkinter, ensurepip, ...), lib-dynload
                            and site-packages with kiln and its runtime dependencies (from the virtualenv;
                            Debian's Python looks in kiln/lib/python3/dist-packages instead)
  kiln/etc/ssl/             CA certificates (certifi's bundle) and a minimal openssl.cnf
  kiln/bin/kiln             kiln's command line
  kiln/tmp/                 TMPDIR: an image built FROM scratch has no /tmp (until a base image brings one)
  kaniko/executor           kaniko's entry point: `kiln build --in-place` with kaniko's arguments
  kiln-in-place             the empty marker, copied to /.kiln-in-place
  busybox/busybox           the debug target's shell (Debian's busybox-static, a static binary)

Base images of in-place builds replace / outside kiln's own directories, so nothing here may rely on them: a
base image's /etc/ld.so.cache, /usr/lib/ssl or /lib must not change how kiln's Python starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

PREFIX = "/kiln"
LIB = f"{PREFIX}/lib"
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"

# Parts of the standard library kiln never imports (and their extension modules).
STDLIB_DROP = {
    "site-packages", "dist-packages", "lib-dynload", "__pycache__", "test", "tests", "idle_test", "idlelib",
    "tkinter", "turtledemo", "turtle.py", "ensurepip", "lib2to3", "distutils", "pydoc_data", "sqlite3", "curses",
    "venv", "LICENSE.txt",
}  # fmt: skip
STDLIB_DROP_PREFIXES = ("config-",)  # config-3.X-x86_64-linux-gnu: the static library and Makefile
DYNLOAD_DROP = re.compile(
    r"^(_tkinter|_test\w*|_ctypes_test|xxlimited\w*|xxsubtype|_xxsubinterpreters|_xxtestfuzz|readline|_curses\w*|"
    r"nis|_dbm|_gdbm|_sqlite3|_crypt|ossaudiodev|spwd|audioop)\."
)
# Libraries glibc itself dlopen()s (unwinding for pthread_cancel/exit): not in any ldd listing.
DLOPENED = ("libgcc_s.so.1",)


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    mode = os.stat(src).st_mode
    os.chmod(dst, 0o755 if mode & stat.S_IXUSR else 0o644)


def copy_stdlib(stdlib: Path, dest: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(stdlib):
        rel = Path(dirpath).relative_to(stdlib)
        dirnames[:] = sorted(
            d for d in dirnames if d not in STDLIB_DROP and not d.startswith(STDLIB_DROP_PREFIXES)
        )
        for name in filenames:
            if name in STDLIB_DROP or name.endswith((".pyc", ".pyo", ".exe")):
                continue
            src = Path(dirpath) / name
            if src.is_symlink():
                continue  # pyenv: none; Debian: none that kiln needs
            copy_file(src, dest / rel / name)


def dynload_dir() -> Path:
    for entry in sys.path:
        if entry.endswith("lib-dynload") and os.path.isdir(entry):
            return Path(entry)
    raise SystemExit("stage: this Python has no lib-dynload directory on sys.path")


def copy_dynload(src: Path, dest: Path) -> None:
    for name in sorted(os.listdir(src)):
        if name.endswith(".so") and not DYNLOAD_DROP.match(name):
            copy_file(src / name, dest / name)


def _requirements(dist: metadata.Distribution) -> list[str]:
    from pip._vendor.packaging.requirements import Requirement  # the venv always has pip

    names = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def runtime_distributions(root: str = "kiln") -> list[metadata.Distribution]:
    """kiln's runtime dependencies, transitively (kiln itself excluded: it is copied from src/)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = _requirements(metadata.distribution(root))
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        dist = metadata.distribution(name)
        seen[key] = dist
        todo.extend(_requirements(dist))
    return [seen[k] for k in sorted(seen)]


def copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    for file in dist.files or []:
        parts = Path(file).parts
        if parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
            continue  # console scripts live in the venv's bin/; byte code is compiled in the image
        src = Path(str(dist.locate_file(file)))
        if src.is_file():
            copy_file(src, site / file)


def copy_kiln(repo: Path, site: Path) -> None:
    src = repo / "src" / "kiln"
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = Path(dirpath).relative_to(src)
        for name in filenames:
            if not name.endswith(".pyc"):
                copy_file(Path(dirpath) / name, site / "kiln" / rel / name)


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def ldd(path: Path) -> tuple[dict[str, Path], Path | None]:
    """The libraries path needs (name -> resolved file) and the dynamic loader, as ldd lists them."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout
    libs: dict[str, Path] = {}
    loader = None
    for line in out.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            target = rest.split("(")[0].strip()
            if target == "not found":
                raise SystemExit(f"stage: {path} needs {name.strip()}, which ldd cannot find")
            if target:
                libs[name.strip()] = Path(target)
        elif line.startswith("/"):
            loader = Path(line.split()[0])
    return libs, loader


def find_system_library(name: str) -> Path | None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.strip().startswith(name + " ") and "x86-64" in line:
            return Path(line.rsplit("=>", 1)[1].strip())
    return None


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def rpath_of(path: Path) -> list[str]:
    out = subprocess.run(["patchelf", "--print-rpath", str(path)], capture_output=True, text=True, check=True)
    return [p for p in out.stdout.strip().split(":") if p]


def make_self_contained(kiln: Path, interpreter: Path, strip: bool) -> list[str]:
    """Copy what the ELF files under kiln/ need into kiln/lib and point them there. Returns the libraries."""
    lib = kiln / "lib"
    elves = [interpreter] + sorted(p for p in kiln.rglob("*.so*") if p.is_file() and is_elf(p))
    needed: dict[str, Path] = {}
    loader: Path | None = None
    for elf in elves:
        libs, found = ldd(elf)
        needed.update(libs)
        loader = loader or found
    if loader is None:
        raise SystemExit(f"stage: ldd shows no dynamic loader for {interpreter}")
    for name in DLOPENED:
        path = find_system_library(name)
        if path is not None:
            needed.setdefault(name, path)
    system_dirs = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")
    copied = []
    for name, path in sorted(needed.items()):
        dest = lib / name
        if dest.exists():  # the extension modules' own bundled libraries
            continue
        copy_file(path.resolve(), dest)
        copied.append(name)
        if strip and not str(path.resolve()).startswith(system_dirs):
            run("strip", "--strip-unneeded", str(dest))
    loader_name = loader.name
    copy_file(loader.resolve(), lib / loader_name)
    copied.append(loader_name)
    # Every object gets /kiln/lib as its run path (a RUNPATH serves only the object that carries it); an
    # extension module keeps its own $ORIGIN entries (wheels bundle libraries beside themselves).
    for elf in [interpreter] + sorted(p for p in kiln.rglob("*.so*") if p.is_file() and is_elf(p)):
        if elf.name == loader_name:
            continue
        if strip and elf.name not in copied:
            run("strip", "--strip-unneeded", str(elf))
        own = [p for p in rpath_of(elf) if p.startswith("$ORIGIN")]
        run("patchelf", "--set-rpath", ":".join([*own, LIB]), str(elf))
    run("patchelf", "--set-interpreter", f"{LIB}/{loader_name}", str(interpreter))
    return copied


OPENSSL_CNF = """\
# kiln's image: OpenSSL's defaults (OPENSSL_CONF points here, so a base image's /usr/lib/ssl is never read)
openssl_conf = openssl_init
[openssl_init]
"""


def site_packages(base_python: Path) -> str:
    """Where the interpreter looks for packages under the prefix /kiln (Debian's: lib/python3/dist-packages),
    asked of the base interpreter itself: in a virtualenv, site.py answers for virtualenvs."""
    code = f"import site; print('\\n'.join(site.getsitepackages(prefixes=[{PREFIX!r}])))"
    out = subprocess.run([str(base_python), "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    found = [p for p in out.splitlines() if p and "/local/" not in p]
    if not found:
        raise SystemExit(f"stage: this Python has no site-packages directory under {PREFIX}")
    return found[0]


def stage(repo: Path, out: Path, strip: bool) -> None:
    kiln = out / "kiln"
    pylib = kiln / "lib" / VERSION
    base_python = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    site = out / site_packages(base_python).lstrip("/")
    interpreter = kiln / "bin" / VERSION
    copy_file(base_python, interpreter)
    os.symlink(VERSION, kiln / "bin" / "python3")
    copy_stdlib(Path(sysconfig.get_path("stdlib")), pylib)
    copy_dynload(dynload_dir(), pylib / "lib-dynload")
    copy_kiln(repo, site)
    for dist in runtime_distributions():
        copy_distribution(dist, site)
    make_self_contained(kiln, interpreter, strip)
    import certifi

    certs = kiln / "etc" / "ssl" / "certs"
    copy_file(Path(certifi.where()), certs / "ca-certificates.crt")
    (kiln / "etc" / "ssl" / "openssl.cnf").write_text(OPENSSL_CNF)
    image = repo / "image"
    copy_file(image / "kiln", kiln / "bin" / "kiln")
    copy_file(image / "executor", out / "kaniko" / "executor")
    copy_file(image / "Dockerfile", out / "Dockerfile")
    (out / "kiln-in-place").write_bytes(b"")
    (kiln / "tmp").mkdir()
    os.chmod(kiln / "tmp", 0o1777)
    busybox = shutil.which("busybox", path="/bin:/usr/bin")
    if busybox:  # busybox-static, for the debug target
        copy_file(Path(busybox), out / "busybox" / "busybox")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="an empty or missing directory")
    parser.add_argument("--no-strip", action="store_true", help="keep symbols (strip is binutils')")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"stage: {args.out} is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    stage(args.repo.resolve(), args.out, strip=not args.no_strip)


if __name__ == "__main__":
    main()
