# loopylab — `make demo` runs the main job, `make test` runs the suite. Both set everything up first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# CPU torch first (from local disk when present), so the project's torch range installs nothing more.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

# System packages the tests use (Debian's Chromium for the market's page tests); best effort, as root.
.system-deps:
	@if [ -x scripts/install-chromium.sh ]; then scripts/install-chromium.sh || echo "chromium not installed: browser tests will skip"; fi
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/loopylab demo

# The rules that run: ruff lint and format, the import layers (arrows point down), mypy. Same hooks as pre-commit.
check: $(STAMP)
	scripts/check.sh $(PY)

test: $(STAMP) .system-deps check
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
