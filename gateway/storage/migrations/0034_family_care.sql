-- Family ratings and away mode (issue 13 §7).
--
-- * incident_ratings: a family member's rating (1-5 stars, optional comment) of how an
--   incident of their relative was handled, once per incident and family user, editable
--   for a while (family.rating_edit_window_s); counted per site and month for supervision.
-- * away_periods: "随家人外出": the elder is away with the family from start to end (the
--   family may end it early: ended_at). While one covers a detection's time, routine
--   findings (not up, no activity, night bed exit, not worn) raise no incident; alarms
--   (emergency call, fall, smoke, gas, ...) always do.
-- * away_suppressions: each routine finding not raised because of an away period (kept:
--   suppressed, never silently dropped), with its detection's identity; once the period is
--   over, a finding whose condition is still going on raises its incident (released_at).

CREATE TABLE incident_ratings (
    incident_id bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users ON DELETE CASCADE,
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    site_id     text NOT NULL,
    stars       smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment     text CHECK (length(comment) <= 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, user_id)
);
CREATE INDEX incident_ratings_site_time ON incident_ratings (site_id, created_at);

CREATE TABLE away_periods (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    ended_at    timestamptz,                  -- cancelled early by the family
    note        text CHECK (length(note) <= 200),
    created_by  text NOT NULL,                -- user id
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX away_periods_resident ON away_periods (resident_id, ends_at DESC);

CREATE TABLE away_suppressions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    away_period_id bigint NOT NULL REFERENCES away_periods ON DELETE CASCADE,
    resident_id    text NOT NULL,
    kind           text NOT NULL,
    subject        text NOT NULL,                -- with kind, condition and started: the
    condition      text NOT NULL DEFAULT '',     -- detection (detections_identity)
    started        timestamptz NOT NULL,
    detected_at    timestamptz NOT NULL,
    reason         text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz                   -- looked at again after the period ended
);
CREATE INDEX away_suppressions_resident ON away_suppressions (resident_id, detected_at DESC);
CREATE INDEX away_suppressions_unreleased ON away_suppressions (away_period_id)
    WHERE released_at IS NULL;
