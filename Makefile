# Set-up path: a local .venv with the CPU build of torch pinned, so no CUDA wheel is ever pulled.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
# napari GUI tests need a display: a virtual X server when xvfb-run exists (else they skip, saying why)
XVFB := $(shell command -v xvfb-run >/dev/null 2>&1 && echo xvfb-run -a)

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[test,bioimageio,napari-all]" pytest-qt "$(TORCH_PIN)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/selfnet demo --out demo_out --overwrite

test: setup
	$(XVFB) $(PY) -m pytest tests -q

bench: setup
	$(PY) benchmarks/quality.py --quick

clean:
	rm -rf $(VENV) demo_out
