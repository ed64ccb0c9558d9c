-- Live feed in commit order: incident_events.feed_seq numbers timeline events at COMMIT.
--
-- The identity id of incident_events is taken at INSERT, but a row becomes visible at
-- COMMIT: two incident transactions can commit in the other order than their ids (A inserts
-- id 5, B inserts id 6, B commits, A commits), and a reader that has already read id 6
-- would never look at 5 again. feed_seq closes that gap:
--
--   * a DEFERRABLE INITIALLY DEFERRED constraint trigger runs at COMMIT (after the
--     transaction's own work), takes a transaction-level advisory lock and sets feed_seq
--     from a sequence;
--   * PostgreSQL releases that lock only after the transaction's commit is visible, so the
--     next transaction can take a number only once the previous numbered one is visible:
--     feed_seq order is commit (visibility) order, and a reader that sees feed_seq N has
--     every committed N' < N in the same snapshot. Reading "feed_seq > last seen" therefore
--     never skips an event (gaps come only from rolled-back numbering, never lost rows);
--   * the lock is held from the numbering to the end of COMMIT (a WAL flush), only by
--     transactions that wrote a timeline event; they already serialise on the audit chain's
--     lock for longer (audit_append, 0010), so this adds no real contention.
--
-- feed_seq is NULL only inside the writing transaction (no reader ever sees that).
-- Existing rows keep feed_seq = id, so a client resuming with an older Last-Event-ID (the
-- event id before this migration) continues where it was. Nobody may run
-- SET CONSTRAINTS ALL IMMEDIATE in a transaction that writes timeline events.

CREATE SEQUENCE incident_events_feed_seq AS bigint;

ALTER TABLE incident_events ADD COLUMN feed_seq bigint;
UPDATE incident_events SET feed_seq = id;
SELECT setval('incident_events_feed_seq', max_id, true)
FROM (SELECT max(id) AS max_id FROM incident_events) m WHERE max_id IS NOT NULL;
CREATE UNIQUE INDEX incident_events_feed_seq_idx ON incident_events (feed_seq);

CREATE FUNCTION incident_events_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1526595617);  -- 0x5AFE0021: the live feed's commit order
    UPDATE incident_events SET feed_seq = nextval('incident_events_feed_seq')
    WHERE id = NEW.id AND feed_seq IS NULL;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER incident_events_number AFTER INSERT ON incident_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION incident_events_number();
