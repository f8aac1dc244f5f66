#!/usr/bin/env bash
# `make test` as a new machine runs it, without wiping this one: a fresh clone of the committed
# HEAD in a new temporary directory (nested, so no path is assumed), its own empty image storage
# (a storage.conf there, through CONTAINERS_STORAGE_CONF, which buildah and so scripts/images.py
# and the pod runner honour), no virtualenv, no npm packages, no cache. Debian packages are the
# machine's own and stay installed. Prints the wall time; the directory is removed afterwards
# unless KEEP=1.
#
#   scripts/fresh-machine.sh                  # make test
#   scripts/fresh-machine.sh run              # any make target instead, e.g. make run
#   KEEP=1 scripts/fresh-machine.sh           # keep the clone and its storage to look at
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d "${TMPDIR:-/tmp}/chromadb-chart-fresh.XXXXXX")
storage="$work/containers"
clone="$work/nested/dir/chromadb-chart"
mkdir -p "$storage"
# overlay, as the default storage.conf of Debian's containers-storage names it (STORAGE_DRIVER=vfs to change).
cat >"$storage/storage.conf" <<EOF
[storage]
driver = "${STORAGE_DRIVER:-overlay}"
graphroot = "$storage/graph"
runroot = "$storage/run"
EOF
export CONTAINERS_STORAGE_CONF="$storage/storage.conf"

# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
  status=$?
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "kept: $work (CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF)"
  else
    # The pod runner's containers hold mounts inside the storage: unmount before removing it.
    buildah umount --all >/dev/null 2>&1 || true
    buildah rm --all >/dev/null 2>&1 || true
    rm -rf "$work" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT

git clone --quiet --no-hardlinks "$repo" "$clone"
echo "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone"
echo "image storage: $CONTAINERS_STORAGE_CONF"
start=$(date +%s)
status=0
make -C "$clone" "${@:-test}" PYTEST_ARGS="${PYTEST_ARGS:---durations=20}" || status=$?
elapsed=$(($(date +%s) - start))
printf 'make %s on a fresh clone: exit %d after %dm%02ds\n' "${*:-test}" "$status" $((elapsed / 60)) $((elapsed % 60))
exit "$status"
