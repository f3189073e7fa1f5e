#!/usr/bin/env bash
# Set up everything kiln's tests need on Debian bookworm, as root. Idempotent and quick when all is there.
#
#   scripts/install-deps.sh          Debian packages for the tests + .venv with kiln[test]
#   scripts/install-deps.sh --demo   only what scripts/demo.sh needs: busybox-static + .venv with kiln
#
# Output is quiet; a failing step prints its full log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

mode=test
case "${1:-}" in
  "") ;;
  --demo) mode=demo ;;
  *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac

# Runs a step with its output kept in a log; shows the log only if the step fails.
quietly() {
  local what=$1; shift
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    echo "install-deps: $what failed: $*" >&2
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# --- Debian packages ------------------------------------------------------------------------------------
packages=(python3 python3-venv busybox-static runc)   # runc: the sandbox of RUN steps
if [[ $mode == test ]]; then
  packages+=(
    docker-registry   # the test registry (distribution 2.8)
    buildah runc      # reference builder; runc because crun fails here ("cgroups in hybrid mode")
    skopeo umoci      # copying and unpacking images independently of kiln
    podman fuse-overlayfs uidmap
    debootstrap debian-archive-keyring   # the debian base image
    apache2-utils     # htpasswd for the auth registry
    openssl ca-certificates
    zstd xz-utils tar attr git
    patchelf binutils   # scripts/image.sh: kiln's image (a self-contained Python under /kiln; strip)
    openssh-client openssh-server   # RUN --mount=type=ssh and git@ contexts, against a test-owned sshd
    # arm64: RUN steps of linux/arm64 stages and the arm64 base images run through qemu-user, which the tests
    # register with binfmt_misc for their length (tests/support/binfmt.py); the arm64 .debs come from the same
    # mirror through an apt configuration of the tests' own, so no dpkg architecture is added here.
    qemu-user-static
  )
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "install-deps: missing Debian packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  quietly "apt-get update" apt-get update -q
  # No service may start from a package's postinst (openssh-server would listen on every address): a
  # policy-rc.d that says no, for the length of the install, unless the machine has one of its own.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
  fi
  status=0
  quietly "apt-get install" apt-get install -y -q "${missing[@]}" || status=$?
  if [[ -n $made_policy ]]; then rm -f "$policy"; fi
  ((status == 0)) || exit "$status"
fi

# --- Python virtualenv ----------------------------------------------------------------------------------
# The stamp records what was installed (mode + pyproject.toml) so an unchanged setup skips pip entirely.
extras=$([[ $mode == test ]] && echo '.[test]' || echo '.')
want="$mode $(sha256sum pyproject.toml | cut -d' ' -f1)"
stamp=.venv/.kiln-install-stamp

if ! .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  rm -rf .venv
  quietly "python3 -m venv" python3 -m venv .venv
fi
have=$(cat "$stamp" 2>/dev/null || true)
# A test install also serves the demo; the reverse is not true.
if [[ $have != "$want" && ! ($mode == demo && $have == "test ${want#demo }") ]] \
   || ! .venv/bin/python -c 'import kiln' 2>/dev/null; then
  echo "install-deps: pip install -e '$extras'"
  quietly "pip upgrade" .venv/bin/python -m pip install -q --upgrade pip
  quietly "pip install" .venv/bin/python -m pip install -q -e "$extras"
  echo "$want" >"$stamp"
fi

# --- users for the rootless tests -------------------------------------------------------------------------
# kiln-rootless has subordinate IDs (a full map, as podman's users have); kiln-oneid has none (kiln falls back to
# a one-ID map). Each file holds exactly one line of kiln-rootless's and none of kiln-oneid's.
set_subids() {
  local user=$1 line=$2 file
  for file in /etc/subuid /etc/subgid; do
    touch "$file"
    if [[ -n $line ]] && grep -qx "$line" "$file" && [[ $(grep -c "^$user:" "$file") == 1 ]]; then
      continue
    fi
    grep -v "^$user:" "$file" > "$file.kiln-new" || true
    [[ -n $line ]] && echo "$line" >> "$file.kiln-new"
    chmod --reference="$file" "$file.kiln-new" && mv "$file.kiln-new" "$file"
  done
}
if [[ $mode == test && $(id -u) == 0 ]]; then
  for user in kiln-rootless kiln-oneid; do
    id "$user" >/dev/null 2>&1 || quietly "useradd $user" useradd --create-home --shell /bin/sh "$user"
  done
  set_subids kiln-rootless "kiln-rootless:1000000:65536"
  set_subids kiln-oneid ""
fi
