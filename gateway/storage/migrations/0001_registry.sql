-- Registry: sites, locations, beds, residents, devices, contacts.
-- 一人一床一码: every resident carries an elder code and every bed a bed code.
-- Personal data (names, addresses, phone numbers) lives only in these tables, never in
-- topics, identifiers or logs; identifiers are opaque codes.

CREATE TABLE sites (
    site_id      text PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('nursing_home', 'home_care_centre')),
    utc_offset_s integer NOT NULL DEFAULT 28800,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE locations (
    location_id text PRIMARY KEY CHECK (location_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    site_id     text NOT NULL REFERENCES sites,
    kind        text NOT NULL CHECK (kind IN ('room', 'home')),
    label       text NOT NULL,           -- room number, or a household label
    address     text,                    -- home address of a home-care bed (personal data)
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX locations_site_idx ON locations (site_id);

CREATE TABLE beds (
    bed_id      text PRIMARY KEY CHECK (bed_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    bed_code    text NOT NULL UNIQUE,    -- the bed's code (一床一码)
    site_id     text NOT NULL REFERENCES sites,
    location_id text NOT NULL REFERENCES locations,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX beds_location_idx ON beds (location_id);

CREATE TABLE residents (
    resident_id    text PRIMARY KEY CHECK (resident_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    elder_code     text NOT NULL UNIQUE, -- the elder's code (一人一码)
    site_id        text NOT NULL REFERENCES sites,
    bed_id         text UNIQUE REFERENCES beds,
    display_name   text NOT NULL,        -- personal data
    care_level     smallint NOT NULL CHECK (care_level BETWEEN 0 AND 5),
    lives_alone    boolean NOT NULL DEFAULT false,  -- 安居守护: free devices and rescue service
    high_risk      boolean NOT NULL DEFAULT false,  -- 探访关爱: regular visits required
    status         text NOT NULL DEFAULT 'home' CHECK (status IN ('home', 'away', 'hospital')),
    consent_family_health    boolean NOT NULL DEFAULT false, -- relatives may see vitals
    consent_family_incidents boolean NOT NULL DEFAULT true,  -- relatives are told of incidents
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX residents_site_idx ON residents (site_id);

CREATE TABLE devices (
    device_id         text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    site_id           text NOT NULL REFERENCES sites,
    kind              text NOT NULL CHECK (kind IN ('button', 'bed_sensor', 'wearable')),
    model             text NOT NULL,
    serial            text NOT NULL,
    firmware          text,
    location_id       text REFERENCES locations,
    bed_id            text REFERENCES beds,
    resident_id       text REFERENCES residents,
    heartbeat_interval_s integer CHECK (heartbeat_interval_s > 0),
    mqtt_password_hash text NOT NULL,   -- Mosquitto $7$ hash; the password itself is never stored
    active            boolean NOT NULL DEFAULT true,
    commissioned_at   timestamptz NOT NULL DEFAULT now(),
    decommissioned_at timestamptz,
    UNIQUE (model, serial)
);
CREATE INDEX devices_site_idx ON devices (site_id);
CREATE INDEX devices_resident_idx ON devices (resident_id);

CREATE TABLE contacts (
    contact_id     text PRIMARY KEY CHECK (contact_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    resident_id    text NOT NULL REFERENCES residents ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('family', 'community_worker')),
    display_name   text NOT NULL,        -- personal data
    relation       text,
    phone          text,                 -- personal data
    email          text,                 -- personal data
    channels       jsonb NOT NULL DEFAULT '[]'::jsonb, -- ordered channel preferences
    consent_notify boolean NOT NULL DEFAULT true,
    priority       smallint NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_resident_idx ON contacts (resident_id);
