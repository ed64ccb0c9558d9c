#!/bin/sh
# First start: create the cluster, the schema owner and the gateway's role (passwords from
# the compose secrets), the database; then run PostgreSQL in the foreground. The schema
# itself is created by `safehome db migrate` (the compose service "migrate").
set -eu
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8
    cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = '*'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
CONF
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses=''" start
    owner_pw=$(cat /run/secrets/db_owner_password)
    app_pw=$(cat /run/secrets/db_password)
    psql -v ON_ERROR_STOP=1 -U postgres -d postgres \
        -v owner_pw="$owner_pw" -v app_pw="$app_pw" <<'SQL'
CREATE ROLE safehome_owner LOGIN PASSWORD :'owner_pw';
CREATE ROLE safehome LOGIN PASSWORD :'app_pw';
CREATE DATABASE safehome OWNER safehome_owner;
\c safehome
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
    "$bin/pg_ctl" -D "$PGDATA" -w stop
fi
exec "$bin/postgres" -D "$PGDATA"
