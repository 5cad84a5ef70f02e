# Set-up and the two main commands. Each target creates .venv and installs what it needs.
#   make bench   the main job: hrnet-fast bench (speed and equivalence, reference vs hrnet_fast)
#   make test    the tests (plus the nvcc compile check of the CUDA sources)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch is taken from the environment if one is importable (the venv sees system packages), else
# torch==2.13.0 (a CPU build on this project's machines). Nothing here may pull a CUDA torch.
TORCH_SPEC ?= torch==2.13.0
export MAX_JOBS ?= 2

.PHONY: all venv build bench test clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(VENV)/.deps: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q "numpy" "triton>=3.0" ninja pybind11 pytest pytest-benchmark pyyaml packaging "setuptools>=64" wheel
	touch $@

# Editable install: builds hrnet_fast/_C (C++ always, CUDA when torch is a CUDA build with a toolkit).
$(VENV)/.built: $(VENV)/.deps setup.py $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h csrc/*.h)
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

venv: $(VENV)/.deps
build: $(VENV)/.built

bench: build
	$(BIN)/hrnet-fast bench $(BENCH_ARGS)

test: build
	bash .ci/nvcc_check.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf build $(VENV) hrnet_fast/_C*.so *.egg-info
