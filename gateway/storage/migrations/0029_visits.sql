-- Visiting care (探访关爱) and supervision (issue 13).
--
-- * Two new API roles: community_worker (visits the elders assigned to them) and
--   district_supervisor (civil affairs: read-only district totals, no personal data).
-- * Districts group sites (site_districts); a district supervisor or a community worker
--   belongs to one district (user_districts).
-- * assessments: the capability assessment of an elder (老年人能力评估, GB/T 42195-2022 by
--   default; the level set is configuration), newest per resident is the current one.
-- * resident_risks: risk categories per elder (独居 空巢 高龄 失能 特困 high-risk).
-- * worker_assignments: the community worker of each elder (one per elder).
-- * visits: phone and home visits, with proof of presence for home visits (the elder's or
--   bed's code from the QR label, checked against the registry).
-- * door_knock_tasks: "敲门行动" tasks with a deadline, raised from an incident, a silent
--   home or an unreachable elder; the result flows back to the incident timeline.
-- * visit_notices: overdue visits told to the supervisor, once per elder, kind and period.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN
    ('duty_staff', 'supervisor', 'family', 'installer', 'admin',
     'community_worker', 'district_supervisor'));

CREATE TABLE site_districts (
    site_id     text PRIMARY KEY REFERENCES sites ON DELETE CASCADE,
    district_id text NOT NULL CHECK (district_id ~ '^[A-Za-z0-9_-]{1,64}$')
);
CREATE INDEX site_districts_district ON site_districts (district_id);

CREATE TABLE user_districts (
    user_id     text PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    district_id text NOT NULL CHECK (district_id ~ '^[A-Za-z0-9_-]{1,64}$')
);

CREATE TABLE assessments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    level       text NOT NULL CHECK (length(level) BETWEEN 1 AND 32),
    assessor    text NOT NULL CHECK (length(assessor) BETWEEN 1 AND 128),
    assessed_on date NOT NULL,
    next_due    date NOT NULL CHECK (next_due > assessed_on),
    notes       text,
    recorded_by text NOT NULL,               -- user id
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assessments_resident ON assessments (resident_id, assessed_on DESC, id DESC);

CREATE TABLE resident_risks (
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    category    text NOT NULL CHECK (category IN
                    ('living_alone', 'empty_nest', 'very_old', 'dependent',
                     'extreme_poverty', 'high_risk')),
    PRIMARY KEY (resident_id, category)
);

CREATE TABLE worker_assignments (
    resident_id text PRIMARY KEY REFERENCES residents ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users ON DELETE CASCADE,
    assigned_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_assignments_user ON worker_assignments (user_id);

CREATE TABLE door_knock_tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    site_id     text NOT NULL REFERENCES sites,
    incident_id bigint REFERENCES incidents,
    worker_id   text,                        -- the elder's community worker when raised
    reason      text NOT NULL CHECK (reason IN ('no_activity', 'home_silent', 'unreachable')),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL,
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
    result      text CHECK (result IN ('opened_ok', 'no_answer_family_contacted', 'hospital')),
    done_at     timestamptz,
    done_by     text,
    CHECK ((state = 'done') = (result IS NOT NULL AND done_at IS NOT NULL))
);
-- One open task per elder and reason.
CREATE UNIQUE INDEX door_knock_tasks_open ON door_knock_tasks (resident_id, reason)
    WHERE state = 'open';
CREATE INDEX door_knock_tasks_worker ON door_knock_tasks (worker_id, state);

CREATE TABLE visits (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id    text NOT NULL REFERENCES residents ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('phone', 'home')),
    visitor_id     text NOT NULL,            -- user id of who visited
    visited_at     timestamptz NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('well', 'concern', 'not_reached')),
    notes          text CHECK (length(notes) <= 2000),
    concerns       jsonb NOT NULL DEFAULT '[]'::jsonb,
    proof_code     text,                     -- the code scanned or typed (home visits)
    proof_method   text CHECK (proof_method IN ('scan', 'typed')),
    task_id        bigint REFERENCES door_knock_tasks,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'phone' OR (proof_code IS NOT NULL AND proof_method IS NOT NULL))
);
CREATE INDEX visits_resident_time ON visits (resident_id, kind, visited_at DESC);

CREATE TABLE visit_notices (
    resident_id  text NOT NULL REFERENCES residents ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('phone', 'home')),
    due_on       date NOT NULL,              -- the missed due date
    site_id      text NOT NULL REFERENCES sites,
    noticed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resident_id, kind, due_on)
);
CREATE INDEX visit_notices_site ON visit_notices (site_id, noticed_at DESC);
