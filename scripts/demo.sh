#!/usr/bin/env bash
# The demo command: set everything up (idempotent), then run the product on a simulated site.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/safehome --config config/demo.toml demo "$@"
