#!/usr/bin/env bash
# Creates the material of a Synod ordering cluster with the `ca` tool: one CA, one
# identity and one orderer.toml per node, an admin and a client identity.
#
# Run it once per cluster. It refuses to touch an existing output directory, because a
# second CA or a second set of node identities for a running cluster is never what an
# operator wants: keep the output (and back up ca/, which holds the CA's private key).
#
#   deploy/network.sh                   # for deploy/docker-compose.yml
#   TARGET=k8s deploy/network.sh        # for deploy/k8s/ (namespace "synod")
#
# Every setting below is an environment variable; `deploy/network.sh --help` lists them.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: [VAR=value ...] network.sh

Creates, in OUT:
  ca/                   the CA (ca.key is its private key: keep it offline and backed up)
  orderer<N>/           node N: orderer.toml, msp/ (signing identity, trusted CA, CRL), tls/
  admin/, client/       an admin and a client identity (Fabric MSP layout)

Environment (defaults depend on TARGET):
  TARGET            compose | k8s                         [compose]
  OUT               output directory, must not exist yet  [<this script's dir>/network]
  CA_BIN            the `ca` binary                       [ca, from PATH]
  MSP_ID            MSP id of the orderer organisation    [OrdererMSP]
  CA_NAME           common name of the CA                 [ca.synod]
  HOSTS             one host name per node, in id order; each node's peer address,
                    tls_name and certificate name. Their count is the cluster size.
                    compose: "orderer0 orderer1 orderer2"
                    k8s:     "orderer-0.orderer orderer-1.orderer orderer-2.orderer"
  DOMAIN            if set, each node's certificate also names HOST.DOMAIN
                    compose: none; k8s: "$NAMESPACE.svc.$CLUSTER_DOMAIN"
  NAMESPACE         k8s namespace                         [synod]
  CLUSTER_DOMAIN    k8s cluster DNS domain                [cluster.local]
  CLIENT_SANS       extra names/addresses on every node's TLS certificate, for clients
                    that reach the nodes through a shared name or a published port
                    compose: "localhost 127.0.0.1"
                    k8s:     "orderer-client orderer-client.$NAMESPACE
                              orderer-client.$NAMESPACE.svc[.$CLUSTER_DOMAIN] localhost 127.0.0.1"
  NODE_HOME         where a node's directory is mounted in the container; {id} is
                    replaced by the node id
                    compose: /etc/synod; k8s: /etc/synod/orderer-{id}
  DATA_DIR          the node's data directory in the container  [/var/lib/synod/orderer{id}]
  LISTEN_ADDR       address the listeners bind to         [0.0.0.0; "[::]" for IPv6]
  CLIENT_PORT       AtomicBroadcast port                  [7050]
  REPLICA_PORT      replica-to-replica port               [7051]
  ADMIN_PORT        channel participation (admin) port    [7053]
  TICK_MS           consensus housekeeping period         [10]
  SUSPECT_AFTER_MS  silence before a node's slots are revoked [300]
  DAYS              validity of every certificate, days   [365]
  ADMIN_NAME        common name of the admin identity     [admin]
  CLIENT_NAME       common name of the client identity    [client]
  NODE_OWNER        uid:gid to give the node directories when run as root, so that the
                    image's non-root user can read the private keys (mode 0600)
                    compose: 10001:10001; k8s: none (Secrets carry their own modes)
EOF
}

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
"") ;;
*)
	usage >&2
	exit 2
	;;
esac

die() {
	echo "network.sh: $*" >&2
	exit 1
}

TARGET=${TARGET:-compose}
case "$TARGET" in
compose)
	HOSTS=${HOSTS:-orderer0 orderer1 orderer2}
	DOMAIN=${DOMAIN:-}
	CLIENT_SANS=${CLIENT_SANS:-localhost 127.0.0.1}
	NODE_HOME=${NODE_HOME:-/etc/synod}
	NODE_OWNER=${NODE_OWNER-10001:10001}
	;;
k8s)
	NAMESPACE=${NAMESPACE:-synod}
	CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
	# Pod names under the headless Service "orderer" (StatefulSet "orderer"); the short
	# form resolves in any namespace through the pod's DNS search path.
	HOSTS=${HOSTS:-orderer-0.orderer orderer-1.orderer orderer-2.orderer}
	DOMAIN=${DOMAIN-$NAMESPACE.svc.$CLUSTER_DOMAIN}
	# The ClusterIP Service "orderer-client" in every form a client may dial, and
	# localhost for `kubectl port-forward`.
	client_service=orderer-client
	CLIENT_SANS=${CLIENT_SANS:-$client_service $client_service.$NAMESPACE $client_service.$NAMESPACE.svc $client_service.$NAMESPACE.svc.$CLUSTER_DOMAIN localhost 127.0.0.1}
	default_home='/etc/synod/orderer-{id}'
	NODE_HOME=${NODE_HOME:-$default_home}
	NODE_OWNER=${NODE_OWNER-}
	;;
*) die "TARGET must be compose or k8s, not '$TARGET'" ;;
esac

OUT=${OUT:-$(dirname "$0")/network}
CA_BIN=${CA_BIN:-ca}
MSP_ID=${MSP_ID:-OrdererMSP}
CA_NAME=${CA_NAME:-ca.synod}
default_data='/var/lib/synod/orderer{id}'
DATA_DIR=${DATA_DIR:-$default_data}
LISTEN_ADDR=${LISTEN_ADDR:-0.0.0.0}
CLIENT_PORT=${CLIENT_PORT:-7050}
REPLICA_PORT=${REPLICA_PORT:-7051}
ADMIN_PORT=${ADMIN_PORT:-7053}
TICK_MS=${TICK_MS:-10}
SUSPECT_AFTER_MS=${SUSPECT_AFTER_MS:-300}
DAYS=${DAYS:-365}
ADMIN_NAME=${ADMIN_NAME:-admin}
CLIENT_NAME=${CLIENT_NAME:-client}

# --- Checks: everything below is written into TOML strings and certificates unescaped.

read -r -a hosts <<<"$HOSTS"
read -r -a client_sans <<<"$CLIENT_SANS"
n=${#hosts[@]}
# n = 2f + 1: an even size tolerates no more failures than the odd size below it.
if ((n < 3 || n % 2 == 0)); then
	die "HOSTS names $n nodes; a cluster needs an odd number, at least 3"
fi

name_re='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'
for host in "${hosts[@]}"; do
	[[ $host =~ $name_re ]] || die "'$host' in HOSTS is not a host name or IPv4 address"
done
if [ -n "$DOMAIN" ] && ! [[ $DOMAIN =~ $name_re ]]; then
	die "DOMAIN '$DOMAIN' is not a DNS name"
fi
for san in "${client_sans[@]}"; do
	[[ $san =~ ^[A-Za-z0-9.:-]+$ ]] || die "'$san' in CLIENT_SANS is not a host name or address"
done
# A node is told apart from the others by the names in its certificate: a name that two
# nodes share would let neither be identified (the replica transport refuses both).
lower() { tr '[:upper:]' '[:lower:]' <<<"$1"; }
for ((i = 0; i < n; i++)); do
	for ((j = 0; j < n; j++)); do
		if ((i != j)) && [ "$(lower "${hosts[i]}")" = "$(lower "${hosts[j]}")" ]; then
			die "HOSTS names '${hosts[i]}' twice"
		fi
	done
	for san in "${client_sans[@]}"; do
		if [ "$(lower "$san")" = "$(lower "${hosts[i]}")" ]; then
			die "'$san' is both a node's host name and in CLIENT_SANS (names shared by all nodes)"
		fi
	done
done
[[ $MSP_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "MSP_ID '$MSP_ID' may hold letters, digits, '.', '_' and '-'"
for value in "$NODE_HOME" "$DATA_DIR"; do
	[[ $value == /* && $value != *[\"\\]* ]] || die "'$value' must be an absolute path without quotes or backslashes"
done
[[ $LISTEN_ADDR =~ ^([0-9.]+|\[[0-9A-Fa-f:]+\])$ ]] || die "LISTEN_ADDR '$LISTEN_ADDR' must be an IPv4 address or [IPv6]"
for value in "$CLIENT_PORT" "$REPLICA_PORT" "$ADMIN_PORT" "$TICK_MS" "$SUSPECT_AFTER_MS" "$DAYS"; do
	[[ $value =~ ^[1-9][0-9]*$ ]] || die "'$value' must be a positive integer"
done
if [ -n "$NODE_OWNER" ] && ! [[ $NODE_OWNER =~ ^[0-9]+:[0-9]+$ ]]; then
	die "NODE_OWNER '$NODE_OWNER' must be uid:gid"
fi
command -v "$CA_BIN" >/dev/null || die "no '$CA_BIN' binary: build it (cargo build --release --bin ca) and set CA_BIN, or put it on PATH"
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
	die "$OUT already holds files; a cluster's material is made once (choose another OUT)"
fi

# --- The CA and the identities.

mkdir -p "$OUT"
ca_dir=$OUT/ca
# P-256: Fabric's SDKs and peers verify ECDSA only.
"$CA_BIN" init --name "$CA_NAME" --msp-id "$MSP_ID" --algo p256 --dir "$ca_dir" >/dev/null

for ((id = 0; id < n; id++)); do
	host=${hosts[id]}
	sans=(--san "$host")
	if [ -n "$DOMAIN" ]; then
		sans+=(--san "$host.$DOMAIN")
	fi
	for san in "${client_sans[@]}"; do
		sans+=(--san "$san")
	done
	"$CA_BIN" issue --dir "$ca_dir" --role orderer --name "$host" "${sans[@]}" \
		--days "$DAYS" --out "$OUT/orderer$id" >/dev/null
	# The node reads revocations from msp/crls/; replace this file with the CA's
	# crl.pem after every `ca revoke` (the node reloads it within seconds).
	mkdir -p "$OUT/orderer$id/msp/crls"
	"$CA_BIN" crl --dir "$ca_dir" --out "$OUT/orderer$id/msp/crls/crl.pem" >/dev/null
done
"$CA_BIN" issue --dir "$ca_dir" --role admin --name "$ADMIN_NAME" --days "$DAYS" --out "$OUT/admin" >/dev/null
"$CA_BIN" issue --dir "$ca_dir" --role client --name "$CLIENT_NAME" --days "$DAYS" --out "$OUT/client" >/dev/null

# --- One orderer.toml per node, with the paths the node sees inside its container.

for ((id = 0; id < n; id++)); do
	home=${NODE_HOME//"{id}"/$id}
	data=${DATA_DIR//"{id}"/$id}
	{
		cat <<EOF
# Node $id of a $n-node Synod cluster (made by deploy/network.sh, TARGET=$TARGET).
# Paths are as the node sees them in its container.

# This replica's index and the cluster size (n = 2f + 1).
id = $id
replicas = $n
# RocksDB directory: the node's durable state. Never copy it to another node.
data_dir = "$data"
# Replica-to-replica listener (gRPC synod.replica.Replica, mutual TLS).
replica_listen = "$LISTEN_ADDR:$REPLICA_PORT"
# Fabric orderer.AtomicBroadcast listener for peers and clients (mutual TLS).
client_listen = "$LISTEN_ADDR:$CLIENT_PORT"
# Channel participation API for admins.
admin_listen = "$LISTEN_ADDR:$ADMIN_PORT"

# The other replicas; tls_name must be a DNS name in that node's TLS certificate.
EOF
		for ((peer = 0; peer < n; peer++)); do
			((peer == id)) && continue
			cat <<EOF
[[peers]]
id = $peer
address = "${hosts[peer]}:$REPLICA_PORT"
tls_name = "${hosts[peer]}"

EOF
		done
		cat <<EOF
# This node's TLS identity, and the CA that peer and client TLS certificates must
# chain to.
[tls]
cert = "$home/tls/server.crt"
key = "$home/tls/server.key"
ca = "$home/tls/ca.crt"

# The identity this node signs blocks with.
[signing]
msp_id = "$MSP_ID"
cert = "$home/msp/signcerts/cert.pem"
key = "$home/msp/keystore/key.pem"

# Organisations whose members may use this node (MSP folders with cacerts/, crls/).
# Add one entry per peer organisation, with its MSP folder mounted next to this file.
[[trusted_msps]]
msp_id = "$MSP_ID"
dir = "$home/msp"

# Housekeeping period, and the silence after which a node's slots are revoked.
[consensus]
tick_ms = $TICK_MS
suspect_after_ms = $SUSPECT_AFTER_MS
EOF
	} >"$OUT/orderer$id/orderer.toml"
done

# --- Ownership: the image runs as uid 10001 and the private keys are mode 0600.

if [ -n "$NODE_OWNER" ]; then
	if [ "$(id -u)" = 0 ]; then
		for ((id = 0; id < n; id++)); do
			chown -R "$NODE_OWNER" "$OUT/orderer$id"
		done
		owner_note="Node directories are owned by $NODE_OWNER (the image's user)."
	else
		owner_note="Before starting the containers, give the node directories to the image's user:
  sudo chown -R $NODE_OWNER $OUT/orderer*"
	fi
else
	owner_note=""
fi

echo "Created a $n-node network for MSP $MSP_ID in $OUT (TARGET=$TARGET):"
for ((id = 0; id < n; id++)); do
	echo "  orderer$id/  ${hosts[id]}, mounted at ${NODE_HOME//"{id}"/$id}"
done
echo "  admin/, client/  identities for operators and applications"
echo "  ca/  the CA: keep ca.key offline and backed up; it is not needed by the nodes"
if [ -n "$owner_note" ]; then
	echo "$owner_note"
fi
