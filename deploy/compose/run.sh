#!/usr/bin/env bash
# Starts and stops the compose stack (`make compose-up`, `make compose-down`).
#   deploy/compose/run.sh up|down
# `up` writes an API key (build/compose/api-key, owner-only) and the gateway's key file
# (build/compose/api-keys: its sha256 only) unless they exist, starts the stack and waits until
# the gateway's all-backends health name is SERVING.
set -euo pipefail
cd "$(dirname "$0")/../.."
compose=(${COMPOSE:-docker-compose} -p servemesh -f deploy/compose/compose.yaml)
python=${PYTHON:-.venv/bin/python}
keys=build/compose
case ${1:-} in
up)
	mkdir -p "$keys"
	if [ ! -s "$keys/api-key" ]; then
		(umask 077 && "$python" -c 'import secrets; print("sm-" + secrets.token_urlsafe(24))' >"$keys/api-key")
		"$python" -c 'import hashlib, sys; print("sha256:" + hashlib.sha256(sys.stdin.read().strip().encode()).hexdigest())' \
			<"$keys/api-key" >"$keys/api-keys"
		chmod 644 "$keys/api-keys"
	fi
	export SERVEMESH_COMPOSE_API_KEYS=$PWD/$keys/api-keys
	if ! "${compose[@]}" up -d; then
		"${compose[@]}" ps >&2
		"${compose[@]}" logs --tail 30 >&2
		exit 1
	fi
	echo ">> waiting for the gateway's all-backends health on 127.0.0.1:50151 (TorchServe loads three models)"
	started=$SECONDS
	until "$python" -m deploy.health_probe 127.0.0.1:50151 all-backends >/dev/null 2>&1; do
		if [ $((SECONDS - started)) -gt 600 ]; then
			"${compose[@]}" ps >&2
			"${compose[@]}" logs --tail 30 >&2
			echo "the stack did not become healthy in 600 s" >&2
			exit 1
		fi
		sleep 2
	done
	echo ">> serving after $((SECONDS - started)) s; API key in $keys/api-key"
	;;
down)
	SERVEMESH_COMPOSE_API_KEYS=$PWD/$keys/api-keys "${compose[@]}" down --volumes --timeout 30
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
