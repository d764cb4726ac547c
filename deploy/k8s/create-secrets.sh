#!/usr/bin/env bash
# Creates or updates one Secret per orderer, synod-orderer-<N>, from the output of
# `TARGET=k8s deploy/network.sh`. Run it again after replacing a file (a new CRL, a
# renewed certificate): the Secret is updated in place and the kubelet refreshes the
# mounted files, which the node re-reads (trusted CAs and CRLs within seconds;
# certificates and keys at its next restart).
#
#   deploy/k8s/create-secrets.sh                 # apply to namespace "synod"
#   DRY_RUN=1 deploy/k8s/create-secrets.sh > s.yaml   # print the Secrets instead
#
# Secret keys cannot hold "/", so each file's path becomes its key with "/" -> "-"
# (tls/server.key -> tls-server.key); statefulset.yaml maps the keys back to paths.
set -euo pipefail

NETWORK=${NETWORK:-$(dirname "$0")/../network}
NAMESPACE=${NAMESPACE:-synod}
DRY_RUN=${DRY_RUN:-}

# Every file a node reads; keep in step with the volumes in statefulset.yaml.
files=(
	orderer.toml
	tls/server.crt
	tls/server.key
	tls/ca.crt
	msp/config.yaml
	msp/cacerts/ca.pem
	msp/tlscacerts/ca.pem
	msp/signcerts/cert.pem
	msp/keystore/key.pem
	msp/crls/crl.pem
)

shopt -s nullglob
nodes=("$NETWORK"/orderer[0-9]*)
if [ ${#nodes[@]} -eq 0 ]; then
	echo "create-secrets.sh: no orderer<N>/ directories in $NETWORK (run TARGET=k8s deploy/network.sh, or set NETWORK)" >&2
	exit 1
fi

for dir in "${nodes[@]}"; do
	id=${dir##*/orderer}
	# Pod orderer-N mounts Secret synod-orderer-N at /etc/synod/orderer-N and starts
	# with the orderer.toml found there: that file must be node N's, with those paths.
	if ! grep -q "^id = $id\$" "$dir/orderer.toml" ||
		! grep -q "^cert = \"/etc/synod/orderer-$id/tls/server.crt\"" "$dir/orderer.toml"; then
		echo "create-secrets.sh: $dir/orderer.toml is not node $id's as made with TARGET=k8s (id or paths do not match the StatefulSet's mounts)" >&2
		exit 1
	fi
	args=()
	for file in "${files[@]}"; do
		[ -f "$dir/$file" ] || {
			echo "create-secrets.sh: $dir/$file is missing" >&2
			exit 1
		}
		args+=("--from-file=${file//\//-}=$dir/$file")
	done
	# Rendered client-side, then applied: the same command creates and updates.
	secret=$(kubectl create secret generic "synod-orderer-$id" --namespace "$NAMESPACE" \
		"${args[@]}" --dry-run=client --output yaml)
	if [ -n "$DRY_RUN" ]; then
		printf -- '---\n%s\n' "$secret"
	else
		kubectl apply --filename - <<<"$secret"
	fi
done
