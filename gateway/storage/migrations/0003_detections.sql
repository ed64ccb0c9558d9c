-- Analysis output and the analysis runner's own durable state.
--
-- detections: every finding of the detectors, one row per raise and one row per resolution
-- (resolved = true) of the same condition. A condition is identified by
-- (kind, subject, condition, started): ``condition`` names the sub-condition where a
-- detector has several per subject (vitals: 'heart_rate_high', ...), else ''; ``started``
-- is the data-derived start of the episode (for a fall, the impact; for an emergency call,
-- the press), so the same finding computed again after a restart lands on the same key and
-- is stored once (INSERT ... ON CONFLICT DO NOTHING on detections_identity).
-- The incident workflow reads this table; it is deliberately general (no workflow state).

CREATE TABLE detections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,             -- analytics.types.DetectionKind value
    subject     text NOT NULL,             -- resident, device, location or site id (see kind)
    condition   text NOT NULL DEFAULT '',  -- sub-condition of the kind, '' where there is none
    site_id     text,
    resident_id text,
    device_id   text,
    location_id text,
    technical   boolean NOT NULL,          -- about the devices, not the resident's care
    time        timestamptz NOT NULL,      -- when the condition was established (or cleared)
    started     timestamptz NOT NULL,      -- when the episode began (= time for instant ones)
    resolved    boolean NOT NULL DEFAULT false,
    -- On a raise row: when its resolution was stored. Findings that have no resolution
    -- (fall, emergency call: instants, followed up by the incident workflow) are closed
    -- when they are raised, so "open" always means a condition that is still going on.
    closed_at   timestamptz,
    reason      text NOT NULL,             -- plain-language explanation (codes, no names)
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (resolved AND closed_at IS NOT NULL))
);
CREATE UNIQUE INDEX detections_identity ON detections (kind, subject, condition, started, resolved);
CREATE INDEX detections_time ON detections (time DESC);
CREATE INDEX detections_site_time ON detections (site_id, time DESC);
CREATE INDEX detections_resident_time ON detections (resident_id, time DESC)
    WHERE resident_id IS NOT NULL;
-- Conditions still going on: what the runner reconciles with after a restart.
CREATE INDEX detections_open ON detections (kind, subject)
    WHERE NOT resolved AND closed_at IS NULL;

-- One local calendar day of a resident's routine (analytics.routine.DaySummary), written by
-- the runner when the day is summarised and read back to relearn the routine at start-up.
-- ``subject`` is the resident id (or, for a device bound to no resident, its bed or device id).
CREATE TABLE routine_days (
    subject        text NOT NULL,
    day            integer NOT NULL,       -- days since 1970-01-01 in the site's local time
    rise_s         real,                   -- seconds after local midnight; NULL: no rise seen
    bed_s          real,                   -- may exceed 86400 (bed time after midnight)
    active_minutes real[] NOT NULL DEFAULT '{}',  -- 24 values, or empty when unknown
    away           boolean NOT NULL DEFAULT false,
    bed_data       boolean NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, day)
);

-- Per local day, histograms of a resident's in-bed, still, plausible bed-sensor readings
-- (bin i counts values in [i - 0.5, i + 0.5)): the vitals baseline is relearned from these
-- at start-up instead of scanning two weeks of 1 Hz readings. The current day's row is
-- rewritten as it fills, so a restart loses at most one save interval of counts.
CREATE TABLE vitals_days (
    subject        text NOT NULL,
    day            integer NOT NULL,
    heart_rate     integer[] NOT NULL,     -- 256 bins of 1 bpm
    breathing_rate integer[] NOT NULL,     -- 64 bins of 1 /min
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, day)
);
