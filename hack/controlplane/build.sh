#!/usr/bin/env bash
# Builds the control-plane binaries that Countersign's tests and dev environment run
# (kube-apiserver, kube-controller-manager, kubectl, etcd, helm) from the Go module proxy, and caches them by
# version under ${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}/bin. A second run with
# the cache in place costs well under a second.
#
#   bash hack/controlplane/build.sh           # build what is missing, print the paths
#   bash hack/controlplane/build.sh --quiet   # same, print only errors and build notices
#   bash hack/controlplane/build.sh --print-env  # print KEY=path lines for other tools
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

quiet=0
print_env=0
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet=1 ;;
    --print-env) print_env=1; quiet=1 ;;
    *) echo "build.sh: unknown argument '$arg' (expected --quiet or --print-env)" >&2; exit 2 ;;
  esac
done

say() { if [[ $quiet == 0 ]]; then echo "$@"; fi; }
fail() { echo "controlplane: $*" >&2; exit 1; }

cache="${COUNTERSIGN_CACHE:-$HOME/.cache/countersign}"
bin="$cache/bin"
kube_dir="$bin/kubernetes-$KUBERNETES_VERSION"
etcd_dir="$bin/etcd-$ETCD_VERSION"
helm_dir="$bin/helm-$HELM_VERSION"

need_go() {
  command -v go >/dev/null 2>&1 || fail "Go is not installed or not on PATH. The control-plane binaries are built from the Go module proxy; install Go 1.25 or newer (https://go.dev/doc/install) and run again."
  local v
  v="$(go env GOVERSION 2>/dev/null | sed 's/^go//')"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  if [[ "$major" -lt 1 || ( "$major" -eq 1 && "$minor" -lt 25 ) ]]; then
    fail "Go $v is too old: kube-apiserver $KUBERNETES_VERSION needs Go 1.25 or newer."
  fi
}

# build_step NAME LOGFILE COMMAND...: runs a build, keeps its log, and on failure
# prints the log's tail and a clear message instead of a wall of output.
build_step() {
  local name="$1" log="$2"; shift 2
  local start=$SECONDS
  echo "controlplane: building $name (first time only; cached under $bin) ..." >&2
  if ! "$@" >"$log" 2>&1; then
    echo "----- last lines of $log -----" >&2
    tail -n 30 "$log" >&2
    fail "building $name failed (full log: $log). Check that the Go module proxy is reachable (GOPROXY=$(go env GOPROXY))."
  fi
  echo "controlplane: built $name in $((SECONDS - start))s" >&2
}

mkdir -p "$bin" "$cache/logs"

kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done

if [[ ! -x "$kube_dir/kube-apiserver" || ! -x "$kube_dir/kubectl" ]]; then
  need_go
  tmp="$(mktemp -d "$bin/.kubernetes-build.XXXXXX")"
  build_step "kube-apiserver, kube-controller-manager and kubectl $KUBERNETES_VERSION" "$cache/logs/kubernetes-$KUBERNETES_VERSION.log" \
    env -C "$here/kube" GOFLAGS=-mod=mod go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
  rm -rf "$kube_dir" && mv "$tmp" "$kube_dir"
fi

# Caches from before the controller-manager was part of the harness get it added.
if [[ ! -x "$kube_dir/kube-controller-manager" ]]; then
  need_go
  tmp="$(mktemp -d "$bin/.kcm-build.XXXXXX")"
  build_step "kube-controller-manager $KUBERNETES_VERSION" "$cache/logs/kube-controller-manager-$KUBERNETES_VERSION.log" \
    env -C "$here/kube" GOFLAGS=-mod=mod go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-controller-manager
  mv "$tmp/kube-controller-manager" "$kube_dir/kube-controller-manager" && rm -rf "$tmp"
fi

if [[ ! -x "$etcd_dir/etcd" ]]; then
  need_go
  tmp="$(mktemp -d "$bin/.etcd-build.XXXXXX")"
  build_step "etcd $ETCD_VERSION" "$cache/logs/etcd-$ETCD_VERSION.log" \
    env -C "$here/etcd" GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .
  rm -rf "$etcd_dir" && mv "$tmp" "$etcd_dir"
fi

if [[ ! -x "$helm_dir/helm" ]]; then
  need_go
  tmp="$(mktemp -d "$bin/.helm-build.XXXXXX")"
  kminor="${KUBERNETES_VERSION#v1.}"; kminor="${kminor%%.*}"
  build_step "helm $HELM_VERSION" "$cache/logs/helm-$HELM_VERSION.log" \
    env GOBIN="$tmp" GOFLAGS= go install -trimpath -ldflags "-s -w \
      -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$helm_dir" && mv "$tmp" "$helm_dir"
fi

if [[ $print_env == 1 ]]; then
  echo "KUBE_APISERVER=$kube_dir/kube-apiserver"
  echo "KUBE_CONTROLLER_MANAGER=$kube_dir/kube-controller-manager"
  echo "KUBECTL=$kube_dir/kubectl"
  echo "ETCD=$etcd_dir/etcd"
  echo "HELM=$helm_dir/helm"
fi
say "kube-apiserver: $kube_dir/kube-apiserver ($("$kube_dir/kube-apiserver" --version 2>&1))"
say "kube-controller-manager: $kube_dir/kube-controller-manager"
say "kubectl:        $kube_dir/kubectl"
say "etcd:           $etcd_dir/etcd"
say "helm:           $helm_dir/helm"
