#!/usr/bin/env bash
# The benchmark's own environment with llama.cpp (llama-cpp-python built from source, CPU), apart
# from the project's: its build takes ~10 minutes on 2 cores, and nothing in the tests needs it.
#   scripts/setup_llama_cpp.sh [DEST=.bench/llama] [PYTHON=python3]
# DEST/bin/python imports llama_cpp; DEST/src holds the sdist's llama.cpp converter
# (convert_hf_to_gguf.py and gguf-py) for turning a checkpoint into GGUF.
set -euo pipefail
dest=${1:-.bench/llama}
python=${2:-python3}
version=0.3.36
[ -f "$dest/.complete" ] && exit 0
"$python" -m venv "$dest"
"$dest/bin/python" -m pip install --quiet --upgrade pip
CMAKE_ARGS="-DGGML_NATIVE=ON" "$dest/bin/python" -m pip install --quiet --no-binary llama-cpp-python \
  "llama-cpp-python==$version" "numpy<3" "safetensors" "torch==2.13.0" "sentencepiece" "transformers" "protobuf"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$dest/bin/python" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" "llama-cpp-python==$version"
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
rm -rf "$dest/src" && mkdir -p "$dest/src"
cp -r "$work"/llama_cpp_python-*/vendor/llama.cpp/. "$dest/src/"
touch "$dest/.complete"
echo "llama.cpp (llama-cpp-python $version) ready in $dest"
