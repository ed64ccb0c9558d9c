-- Sign-in throttle counts shared by every gateway process (gateway.api.login_throttle).
--
-- Failed sign-ins are counted per user name and per client address over api.login_window_s
-- (limits api.login_max_failures_per_user / _per_address). Both processes of a failover
-- pair serve the API: the counts live here, so alternating between them or waiting for a
-- restart gives an attacker no extra guesses.
--
-- One row per key: kind 'user' (the sign-in name, case-folded) or 'address' (the client
-- address). key_hash is an HMAC-SHA256 of the key under a secret derived from api.jwt_secret:
-- attacker-chosen names (or a password typed into the name field) are never stored in the
-- clear. failures holds the times of the key's latest failures within the window (at most
-- the limit); an attempt counts from the moment it starts and a successful one is taken back.
-- A sign-in locks its two rows (INSERT ... ON CONFLICT DO UPDATE ... RETURNING, address row
-- first) for the decision, so two processes at once cannot exceed a limit. Rows without a
-- failure inside the window are deleted (last_at, pruned by the sign-in path).
-- Grants come from the default privileges of migration 0014.

CREATE TABLE login_failures (
    kind      text NOT NULL CHECK (kind IN ('user', 'address')),
    key_hash  text NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    failures  timestamptz[] NOT NULL DEFAULT '{}',
    last_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key_hash)
);
CREATE INDEX login_failures_last ON login_failures (last_at);
