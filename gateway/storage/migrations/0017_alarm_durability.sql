-- Alarm durability (issue 9 §2–4): every stored alarm becomes exactly one incident.
--
-- pending_alarms: one row per stored alarm event (button press / long press, SOS, device
-- fall flag), written by the ingest transaction that stores the event (gateway.ingest), so
-- "acked to the device" implies "marker exists". The transaction that stores the alarm's
-- detection and raises or joins its incident (gateway.escalation.intake) marks it handled;
-- the recovery (gateway.escalation.recovery) handles, at start-up and periodically, every
-- marker still pending after alarms.recovery_grace_s: it raises the incident (late, with the
-- alarm's original time) or records why not (outcome + note). Both paths lock the marker row
-- (FOR UPDATE; the recovery with SKIP LOCKED) and act only on an unhandled marker, so an alarm
-- is never raised by both. Handled rows are kept as the record of what became of each alarm.
-- Grants come from the default privileges set by migration 0014.

CREATE TABLE pending_alarms (
    device_id   text NOT NULL,
    msg_id      text NOT NULL,
    site_id     text NOT NULL,
    type        text NOT NULL,             -- press | long_press | sos | fall
    time        timestamptz NOT NULL,      -- the alarm's time (the receive time if clock_wrong)
    received_at timestamptz NOT NULL,
    clock_wrong boolean NOT NULL DEFAULT false,  -- the device's time was implausible
    device_time timestamptz,               -- what the device said, when clock_wrong
    created_at  timestamptz NOT NULL DEFAULT now(),
    handled_at  timestamptz,
    handled_by  text CHECK (handled_by IN ('analysis', 'recovery')),
    outcome     text CHECK (outcome IN (
                    'raised', 'joined', 'test_observation', 'cancelled', 'already_raised')),
    incident_id bigint REFERENCES incidents ON DELETE SET NULL,
    note        text,                      -- why no incident / how late it was raised
    PRIMARY KEY (device_id, msg_id),
    CHECK ((handled_at IS NULL) = (handled_by IS NULL)),
    CHECK ((handled_at IS NULL) = (outcome IS NULL))
);
-- The recovery's claim query: pending markers, oldest first.
CREATE INDEX pending_alarms_pending ON pending_alarms (created_at) WHERE handled_at IS NULL;

-- Care incidents of a place (issue 9 §3): an alarm from a device bound to a location but to
-- no resident (a bathroom pull-cord, a vacant bed, an unbound device) raises a care incident
-- whose subject is the location (or the site), resident_id NULL. The rule "one open incident
-- per subject and type" is kept for them by a third partial unique index.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'incidents'::regclass AND contype = 'c'
          AND (pg_get_constraintdef(oid) LIKE '%resident_id IS NOT NULL%'
               OR pg_get_constraintdef(oid) LIKE '%''emergency_call''%')
    LOOP
        EXECUTE format('ALTER TABLE incidents DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;
ALTER TABLE incidents ADD CONSTRAINT incidents_type_check CHECK (type IN (
    'emergency_call', 'fall', 'not_up', 'night_bed_exit', 'no_activity',
    'motionless_in_bed', 'vitals_abnormal', 'apnea', 'not_worn',
    'device_offline', 'hub_offline', 'site_offline', 'low_battery',
    'device_clock_wrong'));
-- A care incident names its resident, or is a place's (subject = location or site id).
ALTER TABLE incidents ADD CONSTRAINT incidents_care_subject CHECK (
    technical OR resident_id IS NOT NULL OR subject <> '');

CREATE UNIQUE INDEX incidents_open_care_place ON incidents (subject, type)
    WHERE state IN ('raised', 'acknowledged', 'dispatched', 'on_scene')
      AND NOT technical AND resident_id IS NULL;
