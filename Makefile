# The two README commands: `make demo` and `make test`. Each (re)creates .venv when
# pyproject.toml asks for something the venv was not built from; otherwise nothing installs.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Every package, with its hash: the whole tree (DeepFace's unpinned dependencies included)
# as tested. `make lock` regenerates both lock files from pyproject.toml.
LOCK := requirements/dev.lock
# The stamp's name carries a hash of pyproject.toml and the lock: a change makes it stale.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-16)
PIP_COMPILE := $(PY) -m piptools compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: venv test demo bench reliability soak lint proto lock docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), \
		f"facestream needs Python 3.11 or 3.12 (bytewax 0.21.1 wheels), found {sys.version.split()[0]}"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "facestream installed in $(VENV)"

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# `make demo IMAGES=path/to/folder` runs it on your own images; `make demo VIEW=1` also
# shows its video live in a browser (the page's address is printed; VIEW=HOST:PORT to choose).
demo: $(STAMP)
	$(VENV)/bin/facestream demo $(if $(IMAGES),--images "$(IMAGES)") \
		$(if $(VIEW),--view $(if $(filter 1 yes,$(VIEW)),,"$(VIEW)"))

# Benchmarks run on synthetic weights (same cost as the real ones) unless DEEPFACE_HOME
# already holds weights. The bench checks the files of every section it runs first, makes the
# missing synthetic ones once per machine (outside the repository, in the cache the tests and
# the demo use; never next to real weights) and names the sections it must skip.
bench: $(STAMP)
	@DEEPFACE_HOME=$${DEEPFACE_HOME:-$$($(PY) -c 'from facestream.models import synthetic_deepface_home as h; print(h())')}; \
	export DEEPFACE_HOME; \
	$(PY) -m bench.suite $(BENCH_ARGS)

# Faults and overload against the real system (docs/reliability.md); not part of `make test`,
# which runs the same scenarios at small sizes.
reliability: $(STAMP)
	$(PY) -m bench.reliability $(RELIABILITY_ARGS)

# A live video stream through `facestream up` for SOAK_MINUTES (20), sampling every
# process's memory (docs/limits.md); synthetic weights unless DEEPFACE_HOME holds weights.
soak: $(STAMP)
	$(PY) -m bench.video_soak --minutes $(or $(SOAK_MINUTES),20) --budget $(or $(SOAK_BUDGET),64MiB)

# The documentation site (docs/, mkdocs.yml) into site/; make test builds it strictly too.
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Regenerate facestream/v1/*_pb2*.py from proto/ (tests fail when they are stale).
proto: $(STAMP)
	$(PY) -m apps.protogen

# Resolve pyproject.toml again (newest releases its pins allow) into the lock files: the
# production image's (no extras) and development's (the demo and dev extras).
lock: $(STAMP)
	$(PY) -m pip install --quiet pip-tools
	$(PIP_COMPILE) --output-file=requirements/production.lock pyproject.toml
	$(PIP_COMPILE) --all-extras --output-file=requirements/dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
