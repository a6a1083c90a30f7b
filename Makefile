# Set-up path: a local .venv with torch pinned to 2.13.0.
# Which build that pin installs depends on the package index pip uses: an index that serves only CPU
# wheels (like this project's build machine, or TORCH_INDEX below) gives the CPU build; plain PyPI on
# Linux x86_64 gives the CUDA build (several GB, it also runs on CPU-only machines).
# For the CPU build from PyTorch's own index:  make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
TORCH_INDEX ?=
# torch from TORCH_INDEX when given (PyPI stays an extra index for its dependencies); pip's defaults otherwise
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple,)
# napari GUI tests need a display: a virtual X server when xvfb-run exists (else they skip, saying why)
XVFB := $(shell command -v xvfb-run >/dev/null 2>&1 && echo xvfb-run -a)

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_FROM) "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[test,bioimageio,napari-test,phantoms,psf]" "$(TORCH_PIN)"
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
