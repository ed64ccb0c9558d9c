-- Call-centre tools (issue 11 §5): click-to-call from an incident, call outcomes and notes.
--
-- * residents.phone: the elder's own phone (personal data); locations.phone: the room's or
--   the home's landline (personal data). Either is what "call the resident" dials.
-- * incident_calls: one row per call attempt from the duty console: who called (user id),
--   whom (kind + the contact, user or resident id: never the number), through which
--   adapter, what the adapter answered (placed / failed and a short code, never the
--   provider's message), and the outcome staff recorded afterwards with a note.
--   The timeline events (incident_events kinds call_placed, call_outcome, incident_note)
--   and the audit entries are written in the same transaction by gateway.telephony.

ALTER TABLE residents
    ADD COLUMN phone text CHECK (phone IS NULL OR phone ~ '^[0-9+() -]{3,32}$');
ALTER TABLE locations
    ADD COLUMN phone text CHECK (phone IS NULL OR phone ~ '^[0-9+() -]{3,32}$');

CREATE TABLE incident_calls (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id   bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    caller_id     text NOT NULL,               -- user id of the staff member
    callee_kind   text NOT NULL CHECK (callee_kind IN ('resident', 'family', 'community_worker')),
    callee_ref    text NOT NULL,               -- resident id, contact id or user id
    channel       text NOT NULL CHECK (channel IN ('aliyun', 'sip')),
    status        text NOT NULL CHECK (status IN ('placed', 'failed')),
    detail        text CHECK (length(detail) <= 200),
    provider_call_id text CHECK (length(provider_call_id) <= 128),
    placed_at     timestamptz NOT NULL DEFAULT now(),
    outcome       text CHECK (outcome IN
                      ('connected', 'no_answer', 'busy', 'invalid_number', 'rejected', 'other')),
    outcome_note  text CHECK (length(outcome_note) <= 2000),
    outcome_by    text,
    outcome_at    timestamptz
);
CREATE INDEX incident_calls_incident ON incident_calls (incident_id, id);
