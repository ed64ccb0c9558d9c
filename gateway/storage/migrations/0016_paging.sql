-- Staff paging off-console (issue 9 §1): staff contact channels, pages through the
-- notification outbox, acknowledgement from the message itself (one-time link, SMS reply
-- code), WeChat openids of family contacts. Grants come from the default privileges set by
-- migration 0014; this file only creates and alters tables.

-- Each staff user's ordered paging channels (position 0 first, then fallback in order).
-- ``channel`` is a notifier name of gateway.notify ('sms', 'voice', 'email', 'webhook[:x]',
-- 'wecom[:x]', 'dingtalk[:x]', 'feishu[:x]', 'bot[:x]'); ``address`` is the phone number
-- (normalised, sms/voice) or e-mail address: personal data, read only at send time and
-- never copied into the outbox, logs or topics.
CREATE TABLE staff_channels (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users ON DELETE CASCADE,
    position   smallint NOT NULL CHECK (position >= 0),
    channel    text NOT NULL
               CHECK (channel ~ '^(sms|voice|email|webhook|wecom|dingtalk|feishu|bot)(:[A-Za-z0-9_-]{1,32})?$'),
    address    text CHECK (address IS NULL OR length(address) BETWEEN 3 AND 254),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, position),
    -- sms/voice need a phone number, email an address; endpoints and bots are configured.
    CHECK ((split_part(channel, ':', 1) IN ('sms', 'voice', 'email')) = (address IS NOT NULL))
);
-- Inbound SMS replies are matched by the sender's number.
CREATE INDEX staff_channels_phone ON staff_channels (address)
    WHERE split_part(channel, ':', 1) IN ('sms', 'voice');

-- Every page carries a short reply code (SMS/voice) valid for paging.ack_ttl_s.
ALTER TABLE staff_pages ADD COLUMN ack_code text CHECK (ack_code ~ '^[0-9]{6}$');
CREATE INDEX staff_pages_user_code ON staff_pages (user_id, ack_code) WHERE ack_code IS NOT NULL;

-- One use per page and user, by link or by reply code (single use: the primary key). The
-- emergency instruction (staff_pages.user_id = '') is paged to everyone on shift: each of
-- them may use it once.
CREATE TABLE staff_page_acks (
    page_id  bigint NOT NULL REFERENCES staff_pages ON DELETE CASCADE,
    incident_id bigint NOT NULL,
    user_id  text NOT NULL,
    via      text NOT NULL CHECK (via IN ('link', 'sms')),
    result   text NOT NULL CHECK (result IN ('acknowledged', 'already_acknowledged')),
    used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, user_id)
);

-- Staff pages go through the same outbox and attempt log as family notifications.
-- recipient_kind tells them apart: 'contact' rows name contact_id; 'staff' rows name the
-- paged user (user_id) and the staff_pages row (page_id), and contact_id is NULL (the
-- emergency instruction row, user_id '', is paged to each user on shift: one chain each).
ALTER TABLE notification_outbox
    ADD COLUMN recipient_kind text NOT NULL DEFAULT 'contact'
        CHECK (recipient_kind IN ('contact', 'staff')),
    ADD COLUMN user_id text REFERENCES users ON DELETE CASCADE,
    ADD COLUMN page_id bigint REFERENCES staff_pages ON DELETE CASCADE,
    ALTER COLUMN contact_id DROP NOT NULL,
    ADD CONSTRAINT notification_outbox_recipient CHECK (
        (recipient_kind = 'contact' AND contact_id IS NOT NULL AND user_id IS NULL
         AND page_id IS NULL)
        OR (recipient_kind = 'staff' AND contact_id IS NULL AND user_id IS NOT NULL
            AND page_id IS NOT NULL));
CREATE UNIQUE INDEX notification_outbox_page_channel
    ON notification_outbox (page_id, user_id, channel_index) WHERE page_id IS NOT NULL;

ALTER TABLE notification_attempts
    ADD COLUMN recipient_kind text NOT NULL DEFAULT 'contact'
        CHECK (recipient_kind IN ('contact', 'staff')),
    ADD COLUMN user_id text,
    ADD COLUMN page_id bigint,
    ALTER COLUMN contact_id DROP NOT NULL,
    ADD CONSTRAINT notification_attempts_recipient CHECK (
        (recipient_kind = 'contact') = (contact_id IS NOT NULL)
        AND (recipient_kind = 'staff') = (user_id IS NOT NULL));

-- WeChat service-account template messages to family contacts: the contact's openid.
ALTER TABLE contacts ADD COLUMN wechat_openid text
    CHECK (wechat_openid IS NULL OR wechat_openid ~ '^[A-Za-z0-9_-]{6,64}$');

-- A new escalation timer (a new incident) wakes the escalation workers at once (they LISTEN),
-- so the first page leaves within milliseconds instead of at the next poll.
CREATE FUNCTION incident_escalations_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('incident_escalations', NEW.incident_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER incident_escalations_notify AFTER INSERT ON incident_escalations
    FOR EACH ROW EXECUTE FUNCTION incident_escalations_notify();
