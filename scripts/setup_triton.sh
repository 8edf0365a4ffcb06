#!/usr/bin/env bash
# Unpack a real Triton Inference Server (CPU, Python backend) from the nvidia-pytriton wheel.
#   scripts/setup_triton.sh [DEST=.triton] [PYTHON=.venv/bin/python]
# DEST/bin/tritonserver, DEST/backends/python (with the stub for PYTHON's version), DEST/libs, and
# DEST/env: the Python-backend models' environment (EXECUTION_ENV_PATH). That stub was built
# against numpy 1.x and misreads numpy 2 arrays, so env pins numpy < 2 apart from the project's
# own environment. Only the wheel's binaries are used, not pytriton's Python package.
set -euo pipefail
dest=${1:-.triton}
python=${2:-.venv/bin/python}
[ -x "$dest/bin/tritonserver" ] && [ -f "$dest/env/.complete" ] && exit 0
version=$("$python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --dest "$work" nvidia-pytriton==0.7.0
"$python" -m zipfile -e "$work"/nvidia_pytriton-*.whl "$work/wheel"
root="$work/wheel/pytriton/tritonserver"
mkdir -p "$dest.partial/bin" "$dest.partial/backends"
cp "$root/bin/tritonserver" "$dest.partial/bin/"
cp -r "$root/backends/python" "$dest.partial/backends/"
cp "$root/python_backend_stubs/$version/triton_python_backend_stub" "$dest.partial/backends/python/"
cp -r "$work/wheel/nvidia_pytriton.libs" "$dest.partial/libs"
chmod +x "$dest.partial/bin/tritonserver" "$dest.partial/backends/python/triton_python_backend_stub"
rm -rf "$dest" && mv "$dest.partial" "$dest"
# the environment is made in place: a virtual environment records its own path (bin/activate,
# which the Python backend sources) and does not survive being moved
"$python" -m venv "$dest/env"
"$dest/env/bin/python" -m pip install --quiet "numpy==1.26.4" "onnxruntime==1.32.0" "tokenizers==0.23.3" "jinja2==3.1.6"
touch "$dest/env/.complete"
echo "Triton Inference Server unpacked into $dest"
