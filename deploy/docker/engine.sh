#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io, docker-compose and
# debootstrap when they are missing (as root, with apt), and starts dockerd when none runs.
# dockerd runs without iptables or a bridge, so containers use the host's network: what this
# kind of machine allows, and all deploy/compose needs.
#   deploy/docker/engine.sh LOG_FILE
set -euo pipefail
log=${1:-build/docker/dockerd.log}
docker=${DOCKER:-docker}
if "$docker" info >/dev/null 2>&1; then exit 0; fi
need=()
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		echo "engine: ${need[*]} missing; install them (Debian: apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo ">> installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! "$docker" info >/dev/null 2>&1; then
	[ "$(id -u)" = 0 ] || { echo "engine: no Docker engine answers and only root can start one" >&2; exit 1; }
	mkdir -p "$(dirname "$log")"
	echo ">> starting dockerd (log: $log)"
	nohup /usr/sbin/dockerd --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
		>"$log" 2>&1 &
	for _ in $(seq 60); do
		"$docker" info >/dev/null 2>&1 && break
		sleep 1
	done
	"$docker" info >/dev/null 2>&1 || { tail -20 "$log" >&2; exit 1; }
fi
"$docker" version --format 'engine {{.Server.Version}} ready'
