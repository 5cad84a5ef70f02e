# Set-up and the two main commands. Each target creates .venv and installs what it needs.
#   make bench              the main job: hrnet-fast bench (speed and equivalence, reference vs hrnet_fast)
#   make test               lint, the nvcc compile check of the CUDA sources, the test suite
#   make lint               ruff (pyflakes rules) over the package, kernels, benchmarks and tests
#   make cuda-build-check   the complete CUDA build of the extension against torch 2.11.0+cu130, imported
#                           without a GPU (.ci/run runs it when CI=true)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip
# torch is taken from the environment if one is importable (the venv sees system packages), else
# torch==2.13.0 (a CPU build on this project's machines). Nothing here may pull a CUDA torch.
TORCH_SPEC ?= torch==2.13.0
export MAX_JOBS ?= 2

.PHONY: all venv build bench test lint cuda-build-check clean

all: test

$(BIN)/python:
	@echo "[make] creating $(VENV) (it sees system packages; an importable torch is reused)"
	$(PYTHON) -m venv --system-site-packages $(VENV)

# The build runs without isolation (it compiles against the torch installed here), so its own
# requirements are installed first; everything else comes from pyproject.toml's extras.
$(VENV)/.deps: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || { \
	  echo "[make] installing $(TORCH_SPEC) (CPU build, ~200 MB; a minute or two)"; \
	  $(PIP) install --progress-bar off $(TORCH_SPEC); }
	@echo "[make] installing the build requirements (setuptools, wheel, ninja)"
	$(PIP) install -q --progress-bar off "setuptools>=64" wheel ninja
	touch $@

# Editable install: builds hrnet_fast/_C (C++ always, CUDA when torch is a CUDA build with a toolkit).
$(VENV)/.built: $(VENV)/.deps setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h csrc/*.h)
	@echo "[make] building the C++ extension hrnet_fast._C and installing -e .[test,triton,pipeline,export,openvino,onnxruntime] (about 2-4 minutes on 2 cores)"
	@start=$$(date +%s); \
	$(PIP) install --progress-bar off --no-build-isolation -e ".[test,triton,pipeline,export,openvino,onnxruntime]" >$(VENV)/build.log 2>&1 \
	  || { tail -n 40 $(VENV)/build.log; echo "[make] build failed: full log in $(VENV)/build.log"; exit 1; }; \
	echo "[make] built in $$(( $$(date +%s) - start )) s (log: $(VENV)/build.log)"
	touch $@

venv: $(VENV)/.deps
build: $(VENV)/.built

bench: build
	$(BIN)/hrnet-fast bench $(BENCH_ARGS)

lint: build
	@echo "[make] ruff check (pyflakes rules) over hrnet_fast kernels benchmarks tests"
	$(BIN)/ruff check hrnet_fast kernels benchmarks tests

test: lint
	bash .ci/nvcc_check.sh
	@echo "[make] running the test suite: about 10 minutes on 2 quiet cores, longer on a busy machine; GPU tests skip without a GPU"
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

cuda-build-check:
	bash .ci/cuda_build_check.sh

clean:
	rm -rf build $(VENV) hrnet_fast/_C*.so *.egg-info
