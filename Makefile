# The two README commands: `make demo` and `make test`. Each (re)creates .venv when
# pyproject.toml asks for something the venv was not built from; otherwise nothing installs.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp's name carries a hash of pyproject.toml: a change there makes it stale.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: venv test demo bench reliability lint proto clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), \
		f"facestream needs Python 3.11 or 3.12 (bytewax 0.21.1 wheels), found {sys.version.split()[0]}"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "facestream installed in $(VENV)"

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# `make demo IMAGES=path/to/folder` runs it on your own images.
demo: $(STAMP)
	$(VENV)/bin/facestream demo $(if $(IMAGES),--images "$(IMAGES)")

# Benchmarks run on synthetic weights (same cost as the real ones) unless DEEPFACE_HOME
# already holds weights; they are made once per machine, outside the repository, in the
# cache the tests and the demo use.
bench: $(STAMP)
	@DEEPFACE_HOME=$${DEEPFACE_HOME:-$$($(PY) -c 'from facestream.models import synthetic_deepface_home as h; print(h())')}; \
	export DEEPFACE_HOME; \
	$(VENV)/bin/facestream models check >/dev/null || $(VENV)/bin/facestream models synth; \
	$(PY) -m bench.suite $(BENCH_ARGS) && $(PY) -m bench.pipeline_parts

# Faults and overload against the real system (README, Reliability); not part of `make test`,
# which runs the same scenarios at small sizes.
reliability: $(STAMP)
	$(PY) -m bench.reliability $(RELIABILITY_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Regenerate facestream/v1/*_pb2*.py from proto/ (tests fail when they are stale).
proto: $(STAMP)
	$(PY) -m facestream.protogen

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
