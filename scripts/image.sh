#!/usr/bin/env bash
# Build kiln's own image (image/Dockerfile) with kiln: a self-contained Python and kiln under /kiln, the in-place
# marker, /workspace, and /kaniko/executor taking kaniko's arguments. See docs/image.md.
#
#   scripts/image.sh --tar OUT.tar                      a docker-archive (docker load, podman load, skopeo)
#   scripts/image.sh --oci-layout-path DIR              an OCI layout
#   scripts/image.sh --destination REG/kiln:TAG         push (repeatable; credentials from ~/.docker/config.json)
#   scripts/image.sh ... --debug                        the debug variant: a busybox shell in /busybox (GitLab CI)
#   scripts/image.sh ... --stage DIR                    keep the staged build context in DIR (must be empty)
#   scripts/image.sh ... --kiln-dir DIR                 kiln's work directory for the build
#   scripts/image.sh ... -- --insecure ...              more `kiln build` flags
#
# Needs what scripts/install-deps.sh installs (the virtualenv's Python is the one that goes into the image;
# patchelf points its ELF files at /kiln/lib, binutils' strip trims them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

tar_path="" layout="" stage_dir="" kiln_dir="" strip=1 debug=0
destinations=() extra=()
while (($#)); do
  case $1 in
    --tar|--tar-path) tar_path=$(realpath -m "$2"); shift 2 ;;
    --oci-layout-path) layout=$(realpath -m "$2"); shift 2 ;;
    -d|--destination) destinations+=("$2"); shift 2 ;;
    --stage) stage_dir=$(realpath -m "$2"); shift 2 ;;
    --kiln-dir) kiln_dir=$(realpath -m "$2"); shift 2 ;;
    --no-strip) strip=0; shift ;;
    --debug) debug=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "image.sh: unknown argument $1" >&2; usage ;;
  esac
done
if [[ -z $tar_path && -z $layout && ${#destinations[@]} -eq 0 ]]; then
  echo "image.sh: say where the image goes: --tar, --oci-layout-path or --destination" >&2
  usage
fi

if ! .venv/bin/kiln --version >/dev/null 2>&1; then
  bash scripts/install-deps.sh --demo
fi
missing=()
command -v patchelf >/dev/null || missing+=(patchelf)
command -v ldd >/dev/null || missing+=(libc-bin)
if ((debug)) && [[ ! -x /bin/busybox ]]; then missing+=(busybox-static); fi
if ((strip)) && ! command -v strip >/dev/null; then missing+=(binutils); fi
if ((${#missing[@]})); then
  echo "image.sh: missing ${missing[*]}: run scripts/install-deps.sh as root (or apt-get install ${missing[*]})" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
context=${stage_dir:-$work/context}

version=$(.venv/bin/python -c 'import kiln; print(kiln.__version__)')
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true)
[[ -n $commit ]] && version="$version+g$commit"

strip_flag=()
((strip)) || strip_flag=(--no-strip)
echo "image.sh: staging the build context in $context"
.venv/bin/python image/stage.py --repo "$REPO" --out "$context" "${strip_flag[@]}"

args=(build --context "$context" --dockerfile "$context/Dockerfile" --reproducible
      --build-arg "KILN_VERSION=$version")
[[ -n $kiln_dir ]] && args+=(--kiln-dir "$kiln_dir")
if ((debug)); then args+=(--target debug); fi
[[ -n $tar_path ]] && args+=(--tar-path "$tar_path")
[[ -n $layout ]] && args+=(--oci-layout-path "$layout")
if ((${#destinations[@]})); then
  for d in "${destinations[@]}"; do args+=(--destination "$d"); done
else
  suffix=""
  if ((debug)); then suffix=-debug; fi
  args+=(--no-push --destination "localhost/kiln:${version//+/-}$suffix")
fi
args+=("${extra[@]}")

echo "+ kiln ${args[*]}"
.venv/bin/kiln "${args[@]}"

echo "image.sh: built kiln $version"
