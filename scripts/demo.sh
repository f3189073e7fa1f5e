#!/usr/bin/env bash
# The README demo: build examples/scratch-busybox with kiln, offline, into an OCI layout and a docker-archive.
#
#   scripts/demo.sh [OUT]     OUT defaults to ./out
#
# Needs only busybox-static and kiln's virtualenv (installed by `scripts/install-deps.sh --demo`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
OUT=$(realpath -m "${1:-out}")

bash scripts/install-deps.sh --demo

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r examples/scratch-busybox/. "$context/"
cp /bin/busybox "$context/busybox"
chmod 0755 "$context/busybox"

mkdir -p "$OUT"
rm -rf "$OUT/scratch-busybox" "$OUT/scratch-busybox.tar"
echo "+ kiln build --context $context --dockerfile $context/Dockerfile --no-push" \
     "--oci-layout-path $OUT/scratch-busybox --tar-path $OUT/scratch-busybox.tar"
"$REPO/.venv/bin/kiln" build \
  --context "$context" \
  --dockerfile "$context/Dockerfile" \
  --no-push \
  --oci-layout-path "$OUT/scratch-busybox" \
  --tar-path "$OUT/scratch-busybox.tar"

echo
echo "Built:"
echo "  OCI layout:      $OUT/scratch-busybox"
echo "  docker-archive:  $OUT/scratch-busybox.tar ($(du -h "$OUT/scratch-busybox.tar" | cut -f1))"
echo
if command -v skopeo >/dev/null; then
  echo "+ skopeo inspect oci:$OUT/scratch-busybox"
  skopeo inspect "oci:$OUT/scratch-busybox"
  echo "+ skopeo inspect --config oci:$OUT/scratch-busybox"
  skopeo inspect --config "oci:$OUT/scratch-busybox"
else
  echo "+ $OUT/scratch-busybox/index.json (install skopeo for a fuller view)"
  "$REPO/.venv/bin/python" -m json.tool "$OUT/scratch-busybox/index.json"
fi
