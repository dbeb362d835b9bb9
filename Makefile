# The two commands: `make demo` runs the whole pipeline end to end; `make test` runs the CPU suite.
# Both create .venv and install what they need when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=
OUT ?= demo_out
TORCH ?= torch==2.13.0
TRT_STUBS ?= tensorrt-stubs==10.13.0.35.1

.PHONY: demo test install clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 is a CPU build on the development machines (pip takes it from local disk); a
	# torch already in the venv (e.g. a CUDA build on a GPU host) is kept. Override with TORCH=...
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	# [dali]: NVIDIA DALI (~720 MB) for the DALI pre-processing model's CPU parity test (the project's
	# tests must run under CI, see tests/conftest.py); numpy stays < 2 for nvidia-pytriton
	$(PY) -m pip install -q -e ".[all,dev,dali]"
	# tensorrt-stubs for the mypy check of the TensorRT code: --no-deps (it requires tensorrt itself, which
	# cannot be installed here), unpacked beside the venv's site-packages so that `import tensorrt` stays absent
	rm -rf $(VENV)/typestubs $(VENV)/typestubs-wheel
	$(PY) -m pip download -q --no-deps "$(TRT_STUBS)" -d $(VENV)/typestubs-wheel
	$(PY) -m zipfile -e $(VENV)/typestubs-wheel/tensorrt_stubs-*.whl $(VENV)/typestubs
	# Triton's perf_analyzer for the bench's load sweep (its rows and tests are skipped with the reason if absent; under CI that is a failure)
	$(PY) -m bench.perf_analyzer --setup || echo "perf_analyzer not set up: its bench rows and tests are skipped with the reason (a failure under CI)"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(PY) -m references.demo --out $(OUT) $(if $(DATA),--data $(DATA),)

clean-demo:
	rm -rf $(OUT)
