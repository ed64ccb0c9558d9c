-- Community workers call from their page (/worker): the same call records as the duty
-- console (incident_calls), made about an elder rather than only about an incident.
--
-- * resident_id: the elder a community worker called about (their own elder, a contact of
--   theirs); task_id: the door-knock task the call was made from, when it was.
-- * incident_id becomes optional: a call from the worker's visit list belongs to the elder
--   only; a call from a door-knock task raised from an incident also carries that incident
--   (and goes to its timeline, like the console's calls).
-- * Still no phone number: callee_kind + callee_ref, as before.

ALTER TABLE incident_calls ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE incident_calls
    ADD COLUMN resident_id text REFERENCES residents ON DELETE CASCADE,
    ADD COLUMN task_id bigint REFERENCES door_knock_tasks ON DELETE SET NULL,
    ADD CONSTRAINT incident_calls_subject CHECK (incident_id IS NOT NULL OR resident_id IS NOT NULL);
CREATE INDEX incident_calls_resident ON incident_calls (resident_id, id)
    WHERE resident_id IS NOT NULL;
