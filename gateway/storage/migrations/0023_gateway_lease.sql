-- Active/standby failover (gateway.lease): who holds the gateway lease, and when it last
-- proved it was alive.
--
-- The lease itself is a session-level advisory lock (pg_try_advisory_lock(lock_key)) held
-- on the active gateway's dedicated lease connection: PostgreSQL releases it the moment
-- that session ends (process killed, connection closed or terminated). This row adds what a
-- lock cannot say: which process holds it (``holder``, also the application_name of every
-- connection of that process), its lease backend, a fencing ``token`` incremented at every
-- takeover, and ``heartbeat_at``, renewed by the holder every failover.check_interval_s on
-- the same connection. A standby that finds the heartbeat older than
-- failover.takeover_after_s (a frozen or partitioned holder whose session the server still
-- keeps) ends every session of that holder (pg_terminate_backend: same role), which
-- releases the lock. Grants come from the default privileges set by migration 0014.

CREATE TABLE gateway_lease (
    lock_key     bigint PRIMARY KEY,
    holder       text NOT NULL,
    backend_pid  integer NOT NULL,
    token        bigint NOT NULL,
    acquired_at  timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
