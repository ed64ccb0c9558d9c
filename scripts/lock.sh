#!/usr/bin/env bash
# Regenerate the hash-pinned lock files from pyproject.toml (pip-tools, Python 3.11):
#   requirements.lock      the gateway's runtime dependencies (the Dockerfile installs these)
#   requirements-dev.lock  runtime + the [dev] extra (tests, linters)
# Install from a lock with:  pip install --require-hashes -r requirements.lock && pip install --no-deps .
# Run after changing dependencies in pyproject.toml; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3.11 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q "pip-tools==7.*"
common=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
        --no-emit-find-links --no-emit-trusted-host)
"$tools/venv/bin/pip-compile" "${common[@]}" -o requirements.lock pyproject.toml
"$tools/venv/bin/pip-compile" "${common[@]}" --extra dev -o requirements-dev.lock pyproject.toml
