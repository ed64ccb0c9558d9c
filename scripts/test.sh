#!/usr/bin/env bash
# The test command: set everything up (idempotent), then lint, type-check and run the whole
# test suite against real PostgreSQL/TimescaleDB and Mosquitto started by the fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
make check
