-- Family notifications: a transactional outbox and a log of every delivery attempt.
-- incident_id is a plain bigint (no foreign key) so this migration does not depend on 0010.
-- The outbox holds no personal data: addresses and names are read from the registry at
-- send time (so a withdrawn consent or a changed phone number takes effect at once).

CREATE TABLE notification_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id     bigint NOT NULL,
    contact_id      text NOT NULL REFERENCES contacts ON DELETE CASCADE,
    channel         text NOT NULL,          -- e.g. 'email', 'sms', 'webhook', 'wecom:ward3'
    channel_index   smallint NOT NULL DEFAULT 0 CHECK (channel_index >= 0),
    payload         jsonb NOT NULL,         -- redacted facts + the contact's channel list
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,            -- a 'sending' row whose lease ran out is reclaimed
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (incident_id, contact_id, channel)
);
-- The worker's claim query: due pending rows and expired leases.
CREATE INDEX notification_outbox_due_idx ON notification_outbox (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX notification_outbox_incident_idx ON notification_outbox (incident_id);

CREATE TABLE notification_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id    bigint NOT NULL REFERENCES notification_outbox ON DELETE CASCADE,
    incident_id  bigint NOT NULL,
    contact_id   text NOT NULL,
    channel      text NOT NULL,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    attempted_at timestamptz NOT NULL DEFAULT now(),
    result       text NOT NULL CHECK (result IN ('delivered', 'transient', 'permanent')),
    detail       text,                      -- short and free of personal data
    duration_ms  integer NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX notification_attempts_outbox_idx ON notification_attempts (outbox_id);
CREATE INDEX notification_attempts_incident_idx ON notification_attempts (incident_id);
