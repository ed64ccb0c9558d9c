#!/usr/bin/env bash
# Set up everything the product and its tests need on Debian 12, as root. Idempotent:
# installs only what is missing, builds TimescaleDB only when absent, and reinstalls the
# virtualenv only when pyproject.toml changed. Works beside system-wide PostgreSQL and
# Mosquitto (the project runs its own instances on other ports).
#
#   scripts/setup.sh            services, TimescaleDB, .venv
#   scripts/setup.sh --browser  also Chromium + ChromeDriver for the console's browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

packages=(
    mosquitto mosquitto-clients
    postgresql-15 postgresql-client-15 postgresql-server-dev-15
    cmake gcc make libc6-dev xz-utils ca-certificates debian-archive-keyring openssl
    python3 python3-venv python3-dev
    fonts-wqy-microhei  # CJK glyphs in PDFs (commissioning records); 1.6 MB vs 57 MB for Noto CJK
    poppler-utils  # pdftotext/pdftoppm: the tests read back and render the commissioning and supervision PDFs
    systemd     # systemd-analyze: the tests verify the units of `safehome install-service`
    prometheus  # promtool: the tests check deploy/prometheus/alerts.yml (its server is not used)
    nftables  # the resilience tests partition a local port (packets dropped, no reset)
    faketime  # the fault matrix runs the gateway with its clock off by an hour (libfaketime)
)
if [ "${1:-}" = "--browser" ]; then
    packages+=(chromium chromium-driver)
fi

if [ "$(id -u)" -ne 0 ]; then
    log "run as root (it installs Debian packages)"; exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/install-timescaledb.sh

# Python 3.11 virtualenv with the project (editable) and its development tools.
py=$(command -v python3.11 || command -v python3)
"$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { log "Python 3.11 is required, found $("$py" --version)"; exit 1; }
stamp=.venv/.safehome-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating the virtualenv (.venv)"
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/safehome --help >/dev/null && echo 'safehome CLI ok')"
