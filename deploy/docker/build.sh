#!/usr/bin/env bash
# Builds the three images with BuildKit from the repository root (`make images`).
#   deploy/docker/build.sh TAG
# The base is BASE_IMAGE (python:3.11-slim-bookworm) when the engine has it or can pull it;
# otherwise deploy/docker/make-base.sh makes one from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:?usage: build.sh TAG}
docker=${DOCKER:-docker}
base=${BASE_IMAGE:-python:3.11-slim-bookworm}
local_base=servemesh/base:python3.11-bookworm
if ! "$docker" image inspect "$base" >/dev/null 2>&1 && ! "$docker" pull -q "$base" >/dev/null 2>&1; then
	echo ">> $base cannot be pulled here; using $local_base from Debian's packages"
	base=$local_base
	"$docker" image inspect "$base" >/dev/null 2>&1 || deploy/docker/make-base.sh "$base"
fi
secrets=build/docker/secrets
for image in gateway llama-predictor torchserve; do
	echo ">> servemesh/$image:$tag (base $base)"
	started=$SECONDS
	log=build/docker/$image.build.log
	# Each step's first line shows progress; the whole output is in the log.
	DOCKER_BUILDKIT=1 "$docker" build --progress=plain --network host \
		--build-arg BASE_IMAGE="$base" \
		--secret id=pip.conf,src=$secrets/pip.conf \
		--secret id=ca.crt,src=$secrets/ca.crt \
		--secret id=apt.sources,src=$secrets/apt.sources \
		-f "deploy/docker/$image.Dockerfile" -t "servemesh/$image:$tag" . 2>&1 \
		| tee "$log" | { grep --line-buffered -E '^#[0-9]+ \[.*\] (RUN|COPY --from)|: built |ERROR' || true; } \
		| cut -c1-110 || { echo "build failed; see $log" >&2; tail -30 "$log" >&2; exit 1; }
	echo "   built in $((SECONDS - started)) s, $("$docker" image inspect -f '{{.Size}}' "servemesh/$image:$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
done
