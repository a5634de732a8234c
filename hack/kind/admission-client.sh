#!/usr/bin/env bash
# The files with which kube-apiserver authenticates itself to Countersign's admission port
# (kind-config.yaml mounts them into the control-plane node), and the ConfigMap holding the CA
# that the chart's webhook verifies that client certificate against.
#
#   bash hack/kind/admission-client.sh [OUT_DIR] [RELEASE] [NAMESPACE]
#     OUT_DIR    default .countersign/kind/admission (what kind-config.yaml mounts)
#     RELEASE    the Helm release name (default countersign)
#     NAMESPACE  its namespace (default countersign-system)
#
# Then, after `kind create cluster --config kind-config.yaml`:
#   kubectl create namespace countersign-system
#   kubectl apply -f OUT_DIR/admission-client-ca-configmap.yaml
#   helm install countersign charts/countersign -n countersign-system ...
#
# Re-running keeps an existing CA and certificate (delete OUT_DIR to start over).
# Needs openssl. The private keys stay in OUT_DIR (mode 600); only the CA certificate is
# published (it is not secret).
set -euo pipefail

out="${1:-.countersign/kind/admission}"
release="${2:-countersign}"
namespace="${3:-countersign-system}"
# Where the control-plane node sees OUT_DIR (kind-config.yaml's containerPath).
node_dir="${NODE_DIR:-/etc/kubernetes/countersign}"
client_name="kube-apiserver-webhook-client"
days=825

case "$release" in *countersign*) fullname="$release" ;; *) fullname="$release-countersign" ;; esac
fullname="${fullname:0:50}"
fullname="${fullname%-}"
configmap="$fullname-admission-client-ca"

command -v openssl >/dev/null || { echo "admission-client.sh: openssl is required" >&2; exit 1; }
mkdir -p "$out"
chmod 700 "$out"
cd "$out"

if [[ ! -s webhook-client-ca.crt || ! -s webhook-client-ca.key ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out webhook-client-ca.key 2>/dev/null
  openssl req -x509 -new -key webhook-client-ca.key -sha256 -days 3650 \
    -subj "/CN=countersign-webhook-client-ca" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out webhook-client-ca.crt
fi
if [[ ! -s webhook-client.crt || ! -s webhook-client.key ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out webhook-client.key 2>/dev/null
  openssl req -new -key webhook-client.key -subj "/CN=$client_name" -out webhook-client.csr
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" \
    "subjectAltName=DNS:$client_name" >webhook-client.ext
  openssl x509 -req -in webhook-client.csr -CA webhook-client-ca.crt -CAkey webhook-client-ca.key \
    -CAcreateserial -days "$days" -sha256 -extfile webhook-client.ext -out webhook-client.crt 2>/dev/null
  rm -f webhook-client.csr webhook-client.ext webhook-client-ca.srl
fi
chmod 600 webhook-client-ca.key webhook-client.key
# kube-apiserver runs as root in kind's static pod; the mount is read-only.
chmod 644 webhook-client-ca.crt webhook-client.crt
openssl verify -CAfile webhook-client-ca.crt -purpose sslclient webhook-client.crt >/dev/null

# "*" is kube-apiserver's default match: this certificate is presented to every webhook.
cat >webhook-client.kubeconfig <<YAML
apiVersion: v1
kind: Config
users:
  - name: "*"
    user:
      client-certificate: "$node_dir/webhook-client.crt"
      client-key: "$node_dir/webhook-client.key"
YAML

cat >admission-config.yaml <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: ValidatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: "$node_dir/webhook-client.kubeconfig"
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: "$node_dir/webhook-client.kubeconfig"
YAML

{
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: $configmap"
  echo "  namespace: $namespace"
  echo "data:"
  echo "  ca.crt: |"
  sed 's/^/    /' webhook-client-ca.crt
} >admission-client-ca-configmap.yaml

echo "wrote $(pwd): admission-config.yaml, webhook-client.kubeconfig, webhook-client.{crt,key}, webhook-client-ca.{crt,key}"
echo "apply admission-client-ca-configmap.yaml (ConfigMap $namespace/$configmap) before installing the chart"
