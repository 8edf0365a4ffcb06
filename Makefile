# The two commands of the README:
#   make demo   set up .venv if needed, then run the main job on the bundled tiny model
#               (inspect, export, lower, chat through onnxruntime, write a Triton repository)
#   make test   set up .venv if needed, then lint (ruff) and run the test suite
# Both install the pinned dependencies (constraints.txt) into a fresh virtual environment.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/exaone4-export
OUT ?= out

.PHONY: demo test lint parity reliability venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	# TensorRT for RTX's ONNX parser dlopens libtensorrt_rtx.so (unversioned) to import plugin nodes and
	# aborts the process when it is missing; the wheel ships only the .so.1 (docs/tensorrt.md).
	libs=$$($(PY) -c 'import tensorrt_rtx_libs, os; print(os.path.dirname(tensorrt_rtx_libs.__file__))') && \
		ln -sf libtensorrt_rtx.so.1 "$$libs/libtensorrt_rtx.so"
	touch $@

demo: venv
	$(CLI) inspect bundled:tiny
	$(CLI) export bundled:tiny -o $(OUT)/tiny-canonical --target canonical
	$(CLI) lower $(OUT)/tiny-canonical -o $(OUT)/tiny-ort --target ort
	$(CLI) generate $(OUT)/tiny-ort --prompt "Show me def dumps" --max-new-tokens 60
	$(CLI) triton $(OUT)/tiny-ort --repo $(OUT)/triton-repo --force

# A real Triton server (CPU) for the deployment tests, unpacked from the nvidia-pytriton wheel.
.triton/env/.complete: scripts/setup_triton.sh
	scripts/setup_triton.sh .triton $(PY)

# ruff (configured in pyproject.toml) first: a style slip fails fast, before minutes of tests.
lint: venv
	$(VENV)/bin/ruff check .

test: lint .triton/env/.complete
	$(PY) -m pytest -q

# docs/reliability.md, generated from the hardening cases of the suite (tests marked `hardening`).
reliability: venv .triton/env/.complete
	$(PY) -m pytest -q -m hardening
	$(PY) scripts/reliability_report.py

# Parity reports on the bundled model for every export target (CI runs this after the tests);
# fails when any backend leaves tolerance.
REPORTS ?= reports
parity: venv
	$(CLI) export bundled:tiny -o $(OUT)/parity-canonical --target canonical --quiet
	$(CLI) lower $(OUT)/parity-canonical -o $(OUT)/parity-ort --target ort --quiet
	$(CLI) lower $(OUT)/parity-canonical -o $(OUT)/parity-standard --target standard --quiet
	$(CLI) export bundled:tiny -o $(OUT)/parity-ort-fp16 --target ort --dtype float16 --quiet
	for t in canonical ort standard ort-fp16; do \
		$(CLI) verify $(OUT)/parity-$$t --checkpoint bundled:tiny --report $(REPORTS)/$$t --force --quiet || exit 1; \
		echo "parity $$t: passed"; \
	done

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info .triton
