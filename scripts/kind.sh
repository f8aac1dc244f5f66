#!/usr/bin/env bash
# The chart on a real cluster (kind or minikube): what .github/workflows/kind.yaml runs, and what
# a developer with Docker runs on a laptop (docs/development.md). Each step is also a make target:
#
#   scripts/kind.sh images           build the chromactl (and legacy Chroma) images, load them into the cluster
#   scripts/kind.sh namespace        (re)create $NAMESPACE with Pod Security `restricted` enforced
#   scripts/kind.sh stage            copy the chart to .ci/charts with tests/kind/values as its ci/ values (for ct)
#   scripts/kind.sh install          helm install + helm test (what `ct install` does, without ct)
#   scripts/kind.sh backup-restore   write data, back it up, lose the volume, restore it, check it
#   scripts/kind.sh all              every step above, in order
#   scripts/kind.sh set-args         print the --set arguments the steps pass to helm (ct install uses them)
#
# Environment: CHROMA_VERSION (default: the chart's appVersion; 0.x uses image/chroma),
# NAMESPACE (chroma-ci), RELEASE (chroma), CLUSTER (kind cluster name, default chromadb-chart),
# LOADER (kind or minikube: how images reach the cluster, default kind).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/charts/chromadb"
CHART_VERSION=$(sed -n 's/^version: *//p' "$CHART/Chart.yaml")
APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
CHROMA_VERSION=${CHROMA_VERSION:-$APP_VERSION}
NAMESPACE=${NAMESPACE:-chroma-ci}
RELEASE=${RELEASE:-chroma}
CLUSTER=${CLUSTER:-chromadb-chart}
LOADER=${LOADER:-kind}
TAG=ci
FULLNAME="$RELEASE-chromadb"
[[ $RELEASE == *chromadb* ]] && FULLNAME=$RELEASE

log() { printf '\n== %s\n' "$*" >&2; }

legacy() { [[ $CHROMA_VERSION == 0.* ]]; }

# The --set arguments that point the chart at the images built here (never pulled) and the
# Chroma version under test.
set_args() {
  local args="chromactl.image.registry=,chromactl.image.repository=chromactl,chromactl.image.tag=$TAG"
  args+=",chromactl.image.pullPolicy=Never,chromadb.apiVersion=$CHROMA_VERSION"
  if legacy; then
    args+=",image.registry=,image.repository=chroma-legacy,image.tag=$CHROMA_VERSION,image.pullPolicy=Never"
  fi
  printf '%s' "$args"
}

load_image() {
  case $LOADER in
    kind) kind load docker-image --name "$CLUSTER" "$1" ;;
    minikube) minikube image load "$1" ;;
    *) echo "LOADER must be kind or minikube, got $LOADER" >&2; exit 2 ;;
  esac
}

images() {
  # The same inputs as every other build (scripts/images.py), with Docker and the real bases;
  # then the short tags the kind values use (set_args), loaded into the cluster.
  local only=(chromactl)
  legacy && only+=("chroma-$CHROMA_VERSION")
  log "building ${only[*]} (chart $CHART_VERSION)"
  python3 "$ROOT/scripts/images.py" build --builder docker --only "${only[@]}" \
    --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  docker tag "ghcr.io/chromadb-chart/chromactl:$CHART_VERSION" "chromactl:$TAG"
  load_image "chromactl:$TAG"
  if legacy; then
    docker tag "ghcr.io/chromadb-chart/chroma:$CHROMA_VERSION" "chroma-legacy:$CHROMA_VERSION"
    load_image "chroma-legacy:$CHROMA_VERSION"
  fi
}

namespace() {
  log "namespace $NAMESPACE with Pod Security restricted enforced"
  kubectl delete namespace "$NAMESPACE" --ignore-not-found --wait
  kubectl create namespace "$NAMESPACE"
  kubectl label namespace "$NAMESPACE" \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest \
    pod-security.kubernetes.io/warn=restricted pod-security.kubernetes.io/audit=restricted
}

stage() {
  log "staging the chart for ct install with tests/kind/values"
  rm -rf "$ROOT/.ci/charts"
  mkdir -p "$ROOT/.ci/charts"
  cp -R "$CHART" "$ROOT/.ci/charts/chromadb"
  rm -rf "$ROOT/.ci/charts/chromadb/ci"
  mkdir "$ROOT/.ci/charts/chromadb/ci"
  cp "$ROOT"/tests/kind/values/*-values.yaml "$ROOT/.ci/charts/chromadb/ci/"
}

install() {
  local values
  for values in "$ROOT"/tests/kind/values/*-values.yaml; do
    log "helm install $RELEASE with $(basename "$values") (Chroma $CHROMA_VERSION)"
    helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --values "$values" \
      --set "$(set_args)" --wait --timeout 10m
    helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m
    helm uninstall "$RELEASE" --namespace "$NAMESPACE" --wait
    kubectl delete pvc --namespace "$NAMESPACE" --all --wait
    kubectl delete secret --namespace "$NAMESPACE" chromadb-auth --ignore-not-found
  done
}

# Runs "$@" with Chroma's Service forwarded to 127.0.0.1:18000.
with_port_forward() {
  kubectl port-forward --namespace "$NAMESPACE" "svc/$FULLNAME" 18000:8000 >/dev/null &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  local i
  for i in $(seq 1 60); do
    curl -fsS -o /dev/null http://127.0.0.1:18000/api/v2/heartbeat && break
    [[ $i == 60 ]] && { echo "port-forward to svc/$FULLNAME never answered" >&2; return 1; }
    sleep 1
  done
  "$@"
}

chroma_data() {
  local token_file="$ROOT/.ci/token"
  mkdir -p "$ROOT/.ci"
  kubectl get secret --namespace "$NAMESPACE" chromadb-auth -o jsonpath='{.data.token}' | base64 -d > "$token_file"
  python3 "$ROOT/scripts/chroma_data.py" "$1" --url http://127.0.0.1:18000 --token-file "$token_file"
}

backup_restore() {
  local values="$ROOT/tests/kind/backup-restore-values.yaml"
  log "install with a backup volume, write data"
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --values "$values" \
    --set "$(set_args)" --wait --timeout 10m
  with_port_forward chroma_data write

  log "back up now (a Job from the CronJob)"
  kubectl create job --namespace "$NAMESPACE" --from "cronjob/$FULLNAME-backup" kind-backup
  kubectl wait --namespace "$NAMESPACE" --for condition=complete job/kind-backup --timeout 5m
  kubectl logs --namespace "$NAMESPACE" job/kind-backup

  log "lose the data: uninstall and delete the data volume (the backup volume and credentials are kept)"
  helm uninstall "$RELEASE" --namespace "$NAMESPACE" --wait
  kubectl delete pvc --namespace "$NAMESPACE" "data-$FULLNAME-0" --wait
  kubectl get pvc --namespace "$NAMESPACE" "$FULLNAME-backup"
  kubectl get secret --namespace "$NAMESPACE" chromadb-auth

  log "reinstall with restore on: the init container restores the latest snapshot"
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" --values "$values" \
    --set "$(set_args)" --set "backup.volume.existingClaim=$FULLNAME-backup,backup.restore.enabled=true" \
    --wait --timeout 10m
  with_port_forward chroma_data check
  helm test "$RELEASE" --namespace "$NAMESPACE" --logs --timeout 5m
}

case ${1:-} in
  images) images ;;
  namespace) namespace ;;
  stage) stage ;;
  install) install ;;
  backup-restore) backup_restore ;;
  all) images; namespace; install; backup_restore ;;
  set-args) set_args; echo ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
