# loopylab — `make demo` runs the main job, `make test` runs the suite. Both set everything up first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench install clean

# Installing takes a few minutes the first time: each step says what it installs, and pip shows its progress.
PIP    := $(PY) -m pip install --progress-bar on --no-input

$(STAMP): pyproject.toml
	@echo "== setting up $(VENV): the first time takes a few minutes (torch, pybullet, the market's web3 stack)"
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "== [1/3] pip, setuptools, wheel"
	@$(PIP) --upgrade pip setuptools wheel
	@# CPU torch first (from local disk when present), so the project's torch range installs nothing more.
	@echo "== [2/3] torch 2.13.0 (CPU; the largest download)"
	@$(PIP) "torch==2.13.0"
	@echo "== [3/3] loopylab and its dependencies (editable, with the dev tools)"
	@$(PIP) -e ".[dev]"
	@echo "== installed: $$($(VENV)/bin/loopylab --version)"
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
