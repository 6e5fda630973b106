#!/usr/bin/env bash
# Builds llama.cpp's C++ llama-server from the llama.cpp sources inside the llama-cpp-python
# source distribution (the same llama.cpp the predictor runs), portable (GGML_NATIVE=OFF),
# into a cache folder outside the repository. Prints the binary's path. Used by `make bench`
# as an optional baseline: when the build fails, the bench goes on without it.
set -euo pipefail
version="${1:?llama-cpp-python version}"
python="${2:-python3}"
cache="${SERVEMESH_CACHE:-$HOME/.cache/servemesh}/llama-server-$version-native-off"
binary="$cache/llama-server"
if [ -x "$binary" ]; then echo "$binary"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo ">> downloading the llama-cpp-python $version source distribution" >&2
"$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
echo ">> building llama-server (a few minutes)" >&2
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$binary"
echo "$binary"
