-- Device streams. Each row keeps the device's message id and sequence number; the unique
-- index on (device_id, msg_id, time) makes a redelivered or retried message land once.
-- With timescaledb present these become hypertables partitioned on the device timestamp.

CREATE TABLE readings (
    time           timestamptz NOT NULL,  -- device timestamp
    device_id      text NOT NULL,
    msg_id         text NOT NULL,
    seq            bigint NOT NULL,
    type           text NOT NULL,         -- vitals | hr | steps | heartbeat
    presence       boolean,
    heart_rate     real,
    breathing_rate real,
    movement       real,
    steps          integer,
    battery        real,
    worn           boolean,
    received_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX readings_dedup ON readings (device_id, msg_id, time);
CREATE INDEX readings_device_time ON readings (device_id, time DESC);

-- Accelerometer: one row per device batch (normally 1 s = 50 samples at 50 Hz) instead of
-- one row per sample: 50x fewer rows and index entries. samples holds n*3 little-endian
-- int16 values in milli-g, interleaved x,y,z (6 bytes a sample, 300 bytes a second).
CREATE TABLE accel (
    time        timestamptz NOT NULL,     -- timestamp of the first sample
    device_id   text NOT NULL,
    msg_id      text NOT NULL,
    seq         bigint NOT NULL,
    fs          real NOT NULL,
    n           smallint NOT NULL,
    samples     bytea NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX accel_dedup ON accel (device_id, msg_id, time);

CREATE TABLE device_events (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    msg_id      text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX device_events_dedup ON device_events (device_id, msg_id, time);
CREATE INDEX device_events_device_time ON device_events (device_id, time DESC);

CREATE TABLE device_state (
    time        timestamptz NOT NULL,
    device_id   text NOT NULL,
    msg_id      text NOT NULL,
    seq         bigint NOT NULL,
    online      boolean NOT NULL,
    battery     real,
    firmware    text,
    rssi        real,
    received_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX device_state_dedup ON device_state (device_id, msg_id, time);
CREATE INDEX device_state_device_time ON device_state (device_id, time DESC);

-- Bad input, kept with the reason so that nothing is silent.
CREATE TABLE dead_letters (
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    device_id    text,                    -- as claimed by the topic, if it parsed
    reason       text NOT NULL,
    detail       text NOT NULL,
    payload_size integer NOT NULL,
    payload      bytea NOT NULL           -- truncated to ingest.dead_letter_payload_bytes
);
CREATE INDEX dead_letters_reason_time ON dead_letters (reason, received_at DESC);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('readings', 'time', chunk_time_interval => interval '1 day');
        PERFORM create_hypertable('accel', 'time', chunk_time_interval => interval '1 hour');
        PERFORM create_hypertable('device_events', 'time', chunk_time_interval => interval '7 days');
        PERFORM create_hypertable('device_state', 'time', chunk_time_interval => interval '7 days');
        PERFORM create_hypertable('dead_letters', 'received_at', chunk_time_interval => interval '7 days');
    END IF;
END$$;
