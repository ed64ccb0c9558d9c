-- Escalation: the duty roster, one escalation timer per incident, and the staff page feed.
--
-- Timers live here, not in memory: the escalation worker (gateway.escalation.worker) claims
-- due rows of incident_escalations with FOR UPDATE SKIP LOCKED and, in one transaction,
-- performs the tier's action (staff pages below, family/community notifications in
-- notification_outbox), advances the row and appends an audit entry. A restart therefore
-- neither loses nor repeats a tier. user_id refers to users of migration 0012 (no foreign
-- key, so this migration does not depend on it).

CREATE TABLE duty_shifts (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id   text NOT NULL REFERENCES sites ON DELETE CASCADE,
    user_id   text NOT NULL,
    role      text NOT NULL CHECK (role IN ('duty_staff', 'supervisor')),
    starts_at timestamptz NOT NULL,
    ends_at   timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX duty_shifts_site_time ON duty_shifts (site_id, role, starts_at, ends_at);

CREATE TABLE incident_escalations (
    incident_id     bigint PRIMARY KEY REFERENCES incidents ON DELETE CASCADE,
    site_id         text NOT NULL,
    tier            integer NOT NULL DEFAULT -1 CHECK (tier >= -1),  -- -1: not started yet
    tier_started_at timestamptz,
    next_at         timestamptz NOT NULL,
    reminders_sent  integer NOT NULL DEFAULT 0 CHECK (reminders_sent >= 0),
    advance_early   boolean NOT NULL DEFAULT false,  -- a tier's channels all failed: move on
    stopped_at      timestamptz,
    stop_reason     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((stopped_at IS NULL) = (stop_reason IS NULL))
);
-- The worker's claim query: running timers by due time.
CREATE INDEX incident_escalations_due ON incident_escalations (next_at) WHERE stopped_at IS NULL;

-- What staff are shown: one row per page, reminder or emergency-services instruction.
-- user_id '' addresses every staff member of the site (the emergency instruction).
-- The unique key makes each page of each tier happen at most once.
CREATE TABLE staff_pages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    site_id     text NOT NULL,
    tier        integer NOT NULL,
    tier_name   text NOT NULL,
    sequence    integer NOT NULL,            -- 0: the tier's first page; n: the n-th reminder
    user_id     text NOT NULL DEFAULT '',
    role        text NOT NULL,               -- duty_staff | supervisor | all
    kind        text NOT NULL CHECK (kind IN ('page', 'reminder', 'instruction')),
    message     text NOT NULL,               -- codes and instructions only, no names
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (incident_id, tier, sequence, user_id)
);
CREATE INDEX staff_pages_site_time ON staff_pages (site_id, created_at DESC);
CREATE INDEX staff_pages_user_time ON staff_pages (user_id, created_at DESC);
