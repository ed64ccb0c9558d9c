-- Commissioning by installers (issue 5): acceptance tests in test mode, their observations,
-- and the commissioning records they produce. Grants come from the default privileges set
-- by migration 0014; this file only creates tables.

-- Why a device left service, and the device that took over its binding (replace).
ALTER TABLE devices
    ADD COLUMN decommission_reason text,
    ADD COLUMN replaced_by text REFERENCES devices;

-- One acceptance test of one device. While it runs (finished_at IS NULL and expires_at in
-- the future) the device is in TEST MODE: the incident intake records its detections as
-- observations instead of raising incidents, so nobody is paged.
CREATE TABLE acceptance_tests (
    test_id     text PRIMARY KEY CHECK (test_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    device_id   text NOT NULL REFERENCES devices,
    site_id     text NOT NULL REFERENCES sites,
    kind        text NOT NULL CHECK (kind IN ('button', 'bed_sensor', 'wearable')),
    bed_id      text REFERENCES beds,
    resident_id text REFERENCES residents,
    installer   text NOT NULL,          -- user id (never a name)
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz,
    result      text CHECK (result IN ('passed', 'failed', 'aborted')),
    CHECK ((finished_at IS NULL) = (result IS NULL)),
    CHECK (expires_at > started_at)
);
-- At most one unfinished test per device; also the intake's test-mode lookup.
CREATE UNIQUE INDEX acceptance_tests_unfinished ON acceptance_tests (device_id)
    WHERE finished_at IS NULL;
CREATE INDEX acceptance_tests_site ON acceptance_tests (site_id, started_at DESC);

-- Detections of a device in test mode (what would have raised an incident).
CREATE TABLE acceptance_observations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    test_id     text NOT NULL REFERENCES acceptance_tests ON DELETE CASCADE,
    device_id   text NOT NULL,
    kind        text NOT NULL,          -- detection kind (emergency_call, fall, ...)
    time        timestamptz NOT NULL,   -- when the condition was established (device time)
    stored_at   timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX acceptance_observations_test ON acceptance_observations (test_id, time);

-- The outcome of a finished test: who, when, which device, step results and latencies.
CREATE TABLE commissioning_records (
    record_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    test_id         text NOT NULL UNIQUE REFERENCES acceptance_tests,
    device_id       text NOT NULL REFERENCES devices,
    site_id         text NOT NULL REFERENCES sites,
    kind            text NOT NULL,
    bed_code        text,
    resident_id     text,
    installer       text NOT NULL,      -- user id
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    result          text NOT NULL CHECK (result IN ('passed', 'failed', 'aborted')),
    steps           jsonb NOT NULL,
    family_notified boolean NOT NULL,
    notes           text
);
CREATE INDEX commissioning_records_site ON commissioning_records (site_id, finished_at DESC);
CREATE INDEX commissioning_records_device ON commissioning_records (device_id, finished_at DESC);
