#!/usr/bin/env bash
# The rules that run (`make check`, called by `make test` and CI): lint, format, import layers, types.
# Usage: scripts/check.sh [PYTHON]   (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
BIN=$(cd "$(dirname "$PY")" && pwd)
fail=0
step() { echo "== $*"; "$@" || fail=1; }

step "$BIN/ruff" check --quiet .
step "$BIN/ruff" format --check --quiet .

# import-linter and mypy read packages from a directory tree; ours are mapped (./bus is loopylab.bus), so they
# read a staging tree of links named as installed. Nothing is copied and nothing here is written into the repo.
stage=$(mktemp -d "${TMPDIR:-/tmp}/loopylab-check.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/loopylab"
ln -s "$PWD/loopylab/__init__.py" "$stage/loopylab/__init__.py"
for pkg in $("$PY" -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]; print(" ".join(v for k, v in d.items() if k != "loopylab"))'); do
    ln -s "$PWD/$pkg" "$stage/loopylab/$pkg"
done
# lint-imports puts the working directory first on sys.path, so it runs from the staging tree.
root=$PWD
lint_imports() { (cd "$stage" && PYTHONPATH="$stage" "$BIN/lint-imports" --no-cache "$root/pyproject.toml"); }
step lint_imports
if grep -q '^\[tool.mypy\]' pyproject.toml; then
    step env MYPYPATH="$stage" "$BIN/mypy" --python-executable "$PY" --config-file pyproject.toml
fi
exit $fail
