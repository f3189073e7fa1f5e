#!/usr/bin/env bash
# The README demo: build the images under examples/ with kiln, offline, into OCI layouts and docker-archives.
#
#   scripts/demo.sh [OUT]     OUT defaults to ./out
#
# Needs only busybox-static and kiln's virtualenv (installed by `scripts/install-deps.sh --demo`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
OUT=$(realpath -m "${1:-out}")

bash scripts/install-deps.sh --demo

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {  # build EXAMPLE: examples/EXAMPLE plus /bin/busybox as ./busybox, into $OUT/EXAMPLE and .tar
  local name=$1 context="$work/$1"
  mkdir -p "$context"
  cp -r "examples/$name/." "$context/"
  cp /bin/busybox "$context/busybox"
  chmod 0755 "$context/busybox"
  rm -rf "$OUT/$name" "$OUT/$name.tar"
  echo "+ kiln build --context $context --no-push --oci-layout-path $OUT/$name --tar-path $OUT/$name.tar"
  "$REPO/.venv/bin/kiln" build \
    --context "$context" \
    --dockerfile "$context/Dockerfile" \
    --kiln-dir "$KILN_DIR" \
    --no-push \
    --oci-layout-path "$OUT/$name" \
    --tar-path "$OUT/$name.tar"
  echo
}

mkdir -p "$OUT"
KILN_DIR=${KILN_DIR:-$OUT/.kiln}
for example in scratch-busybox busybox-run; do
  build "$example"
done

echo "Built:"
for example in scratch-busybox busybox-run; do
  echo "  $example: OCI layout $OUT/$example, docker-archive $OUT/$example.tar ($(du -h "$OUT/$example.tar" | cut -f1))"
done
echo
if command -v skopeo >/dev/null; then
  for example in scratch-busybox busybox-run; do
    echo "+ skopeo inspect oci:$OUT/$example"
    skopeo inspect "oci:$OUT/$example"
  done
else
  for example in scratch-busybox busybox-run; do
    echo "+ $OUT/$example/index.json (install skopeo for a fuller view)"
    "$REPO/.venv/bin/python" -m json.tool "$OUT/$example/index.json"
  done
fi
