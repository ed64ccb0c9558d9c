-- API sign-in sessions (issue 10 §3): revocable tokens and refresh tokens.
--
-- A sign-in opens a session. Its access tokens (short-lived JWTs) carry the session id in
-- the claim "sid"; every authenticated request checks that the session is not revoked and
-- that its user still exists and is active (gateway.storage.auth_sessions.session_valid,
-- one primary-key lookup). Logging out revokes the session; deactivating a user or changing
-- their password revokes all of their sessions; deleting a user deletes them (cascade).
--
-- The refresh token is an opaque random string, stored only as its sha256 (refresh_hash).
-- Each use rotates it: the new token's hash replaces the old one, which is kept in
-- prev_refresh_hash, so presenting a rotated-away token again (a stolen copy) is detected
-- and revokes the session. A session ends when unused for api.refresh_idle_s (idle_until)
-- and at the latest at expires_at (api.session_max_s, installers api.installer_session_max_s).
-- Grants come from the default privileges of migration 0014.

CREATE TABLE auth_sessions (
    session_id        text PRIMARY KEY CHECK (session_id ~ '^[A-Za-z0-9_-]{16,64}$'),
    user_id           text NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    idle_until        timestamptz NOT NULL,
    refreshed_at      timestamptz,
    refresh_hash      text NOT NULL UNIQUE CHECK (refresh_hash ~ '^[0-9a-f]{64}$'),
    prev_refresh_hash text UNIQUE CHECK (prev_refresh_hash ~ '^[0-9a-f]{64}$'),
    revoked_at        timestamptz,
    revoked_reason    text CHECK (revoked_reason IN
                          ('logout', 'deactivated', 'password_changed', 'refresh_reuse')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);
