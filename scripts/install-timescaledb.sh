#!/usr/bin/env bash
# Build and install the TimescaleDB extension (Apache edition) for PostgreSQL 15
# on Debian 12, which ships no timescaledb package.
#
# Debian 13 (trixie) has a source package that builds against PostgreSQL 15.
# We fetch it with a *private* apt configuration so the system's apt sources,
# lists and caches are left untouched, then build with cmake.
#
# Idempotent: exits at once when timescaledb.control is already installed.
# Users on other systems install Timescale's own packages instead (README).
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
WORK="${TIMESCALEDB_BUILD_DIR:-/var/cache/safehome/timescaledb-build}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[install-timescaledb] %s\n' "$*" >&2; }

if [ -x "$PG_CONFIG" ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control" ]; then
    log "timescaledb already installed for PostgreSQL ${PG_MAJOR}"
    exit 0
fi
[ -x "$PG_CONFIG" ] || { log "pg_config not found at $PG_CONFIG (install postgresql-server-dev-${PG_MAJOR})"; exit 1; }
[ -f "$KEYRING" ] || { log "missing $KEYRING (install debian-archive-keyring)"; exit 1; }

mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
cat > "$WORK/apt/sources.list" <<SRC
deb-src [signed-by=${KEYRING}] ${MIRROR} trixie main
SRC
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$WORK/apt/sources.list"
    -o "Dir::Etc::sourceparts=/dev/null"
    -o "Dir::State::lists=$WORK/apt/lists"
    -o "Dir::Cache=$WORK/apt/cache"
    -o "APT::Sandbox::User=root"
)

cd "$WORK/src"
if ! ls timescaledb_*.orig.tar.* >/dev/null 2>&1; then
    log "fetching the trixie source package (private apt configuration)"
    apt-get "${APT_OPTS[@]}" -qq update
    apt-get "${APT_OPTS[@]}" -qq source --download-only timescaledb
fi
orig=$(ls timescaledb_*.orig.tar.* | head -n1)
rm -rf build && mkdir build
tar -xf "$orig" -C build --strip-components=1
cd build
log "building $(basename "$orig") against $("$PG_CONFIG" --version)"
./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=ON \
    -DPG_CONFIG="$PG_CONFIG" -DWARNINGS_AS_ERRORS=OFF >"$WORK/bootstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/bootstrap.log"; exit 1; }
make -C build -j"$(nproc)" >"$WORK/make.log" 2>&1 || { tail -n 40 "$WORK/make.log"; exit 1; }
make -C build install >>"$WORK/make.log" 2>&1 || { tail -n 40 "$WORK/make.log"; exit 1; }
log "installed: $(ls "$("$PG_CONFIG" --sharedir)/extension/" | grep -c timescaledb) timescaledb files"
