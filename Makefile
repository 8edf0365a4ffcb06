# The two commands of the README:
#   make demo   set up .venv if needed, then run the main job on the bundled tiny model
#   make test   set up .venv if needed, then run the test suite
# Both install the pinned dependencies (constraints.txt) into a fresh virtual environment.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/exaone4-export
OUT ?= out

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: venv
	$(CLI) inspect bundled:tiny
	$(CLI) export bundled:tiny -o $(OUT)/tiny-canonical --target canonical
	$(CLI) lower $(OUT)/tiny-canonical -o $(OUT)/tiny-ort --target ort
	$(CLI) generate $(OUT)/tiny-ort --prompt "Show me def dumps" --max-new-tokens 60

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
