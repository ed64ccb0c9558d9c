-- API users, family links, and the live-feed notification.
--
-- users: people who sign in to the HTTP API (staff console, family view, installers).
-- Staff and installers belong to one site; admins to none; family members are scoped by
-- family_links (a family member sees only the residents linked to them). Passwords are
-- stored as argon2id hashes only (gateway.api.auth); user names are personal data and
-- never logged: logs carry user_id.

CREATE TABLE users (
    user_id       text PRIMARY KEY CHECK (user_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    username      text NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 128),
    role          text NOT NULL CHECK (role IN
                      ('duty_staff', 'supervisor', 'family', 'installer', 'admin')),
    site_id       text REFERENCES sites,
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- staff and installers work at one site; an admin is not tied to any.
    CHECK (role NOT IN ('duty_staff', 'supervisor', 'installer') OR site_id IS NOT NULL),
    CHECK (role <> 'admin' OR site_id IS NULL)
);

CREATE TABLE family_links (
    user_id     text NOT NULL REFERENCES users ON DELETE CASCADE,
    resident_id text NOT NULL REFERENCES residents ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, resident_id)
);
CREATE INDEX family_links_resident ON family_links (resident_id);

-- Live feed: every timeline event wakes listeners on channel 'incident_events' with its id
-- (payload: the event id only, no personal data). The API also polls, so a missed
-- notification only delays an event, never loses it.
CREATE FUNCTION incident_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('incident_events', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER incident_events_notify AFTER INSERT ON incident_events
    FOR EACH ROW EXECUTE FUNCTION incident_events_notify();
