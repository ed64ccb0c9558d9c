-- The notification outbox carries messages that are not tied to an incident (issue 13):
-- overdue-visit notices to supervisors and the monthly push to the provincial/municipal
-- elder-care platform. Incident rows are unchanged (kind 'incident', incident_id set).
--
-- * kind: 'incident' (every existing row), 'visit_overdue' (a notice to a supervisor),
--   'platform_push' (a signed HTTP JSON document to the platform endpoint).
-- * subject: what a non-incident message is about, as ids and codes only
--   (e.g. 'resident:r1/home/2026-11-20', 'site:s1/2026-11'), never a name.
-- * dedupe_key: the idempotency key of a non-incident message; unique per channel number,
--   so two processes sweeping at once (failover) queue it once. The platform push sends it
--   as X-Safehome-Idempotency-Key.
-- * recipient_kind 'user': a staff user (supervisor) reached on their staff channels, no
--   page; 'platform': the configured endpoint, no person.
ALTER TABLE notification_outbox
    ALTER COLUMN incident_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'incident'
        CHECK (kind IN ('incident', 'visit_overdue', 'platform_push')),
    ADD COLUMN subject text CHECK (length(subject) <= 200),
    ADD COLUMN dedupe_key text CHECK (length(dedupe_key) <= 200),
    DROP CONSTRAINT notification_outbox_recipient_kind_check,
    ADD CONSTRAINT notification_outbox_recipient_kind_check
        CHECK (recipient_kind IN ('contact', 'staff', 'user', 'platform')),
    DROP CONSTRAINT notification_outbox_recipient,
    ADD CONSTRAINT notification_outbox_recipient CHECK (
        (recipient_kind = 'contact' AND contact_id IS NOT NULL AND user_id IS NULL
         AND page_id IS NULL)
        OR (recipient_kind = 'staff' AND contact_id IS NULL AND user_id IS NOT NULL
            AND page_id IS NOT NULL)
        OR (recipient_kind = 'user' AND contact_id IS NULL AND user_id IS NOT NULL
            AND page_id IS NULL)
        OR (recipient_kind = 'platform' AND contact_id IS NULL AND user_id IS NULL
            AND page_id IS NULL)),
    ADD CONSTRAINT notification_outbox_kind CHECK (
        (kind = 'incident') = (incident_id IS NOT NULL)
        AND (kind = 'incident') = (recipient_kind IN ('contact', 'staff'))
        AND (kind = 'incident' OR dedupe_key IS NOT NULL));
CREATE UNIQUE INDEX notification_outbox_dedupe
    ON notification_outbox (dedupe_key, channel_index) WHERE dedupe_key IS NOT NULL;
-- The message worker's claim query (non-incident rows only).
CREATE INDEX notification_outbox_messages_due_idx ON notification_outbox (next_attempt_at)
    WHERE state IN ('pending', 'sending') AND kind <> 'incident';

ALTER TABLE notification_attempts
    ALTER COLUMN incident_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'incident',
    DROP CONSTRAINT notification_attempts_recipient_kind_check,
    ADD CONSTRAINT notification_attempts_recipient_kind_check
        CHECK (recipient_kind IN ('contact', 'staff', 'user', 'platform')),
    DROP CONSTRAINT notification_attempts_recipient,
    ADD CONSTRAINT notification_attempts_recipient CHECK (
        (recipient_kind = 'contact') = (contact_id IS NOT NULL)
        AND (recipient_kind IN ('staff', 'user')) = (user_id IS NOT NULL));
