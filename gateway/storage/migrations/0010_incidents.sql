-- Incident workflow: incidents, their timeline, and the append-only, hash-chained audit log.
--
-- incidents: resident-centred (care) or subject-centred (technical: device, home, site).
-- The database itself holds the rule "at most one open incident per resident and type"
-- (technical: per subject and type) with two partial unique indexes; a repeated trigger
-- joins the open incident through INSERT ... ON CONFLICT on those indexes (see
-- gateway.workflow.service). "Open" means raised, acknowledged, dispatched or on_scene;
-- resolved, closed and cancelled incidents no longer absorb new triggers.
-- SLA figures come from the columns: acknowledged_at - raised_at (time to acknowledge),
-- on_scene_at - raised_at (time to attend), resolved_at - raised_at (time to resolve).

CREATE TABLE incidents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          text NOT NULL REFERENCES sites,
    resident_id      text REFERENCES residents,  -- NULL only for technical incidents
    subject          text NOT NULL,              -- resident id, or device/location/site id
    type             text NOT NULL CHECK (type IN (
                         'emergency_call', 'fall', 'not_up', 'night_bed_exit', 'no_activity',
                         'motionless_in_bed', 'vitals_abnormal', 'apnea', 'not_worn',
                         'device_offline', 'hub_offline', 'site_offline', 'low_battery')),
    priority         smallint NOT NULL CHECK (priority BETWEEN 1 AND 5),  -- 1 = highest
    technical        boolean NOT NULL,
    state            text NOT NULL DEFAULT 'raised' CHECK (state IN (
                         'raised', 'acknowledged', 'dispatched', 'on_scene', 'resolved',
                         'closed', 'cancelled')),
    trigger_count    integer NOT NULL DEFAULT 1 CHECK (trigger_count >= 1),
    first_trigger_at timestamptz NOT NULL,
    last_trigger_at  timestamptz NOT NULL,
    raised_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    dispatched_at    timestamptz,
    dispatched_by    text,
    responder        text,                       -- staff or service sent (an id, no names)
    on_scene_at      timestamptz,
    resolved_at      timestamptz,
    resolved_by      text,
    outcome          text CHECK (outcome IN (
                         'false_alarm', 'assisted', 'hospital_transfer', 'no_action_needed',
                         'technical_fixed', 'condition_cleared', 'other')),
    resolution_notes text,
    closed_at        timestamptz,
    closed_by        text,
    cancelled_at     timestamptz,
    cancelled_by     text,
    cancel_source    text CHECK (cancel_source IN ('resident', 'staff')),
    reason           text NOT NULL,              -- plain-language explanation (codes, no names)
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (technical OR resident_id IS NOT NULL),
    CHECK (last_trigger_at >= first_trigger_at),
    CHECK (state NOT IN ('dispatched', 'on_scene') OR dispatched_at IS NOT NULL),
    CHECK (state <> 'on_scene' OR on_scene_at IS NOT NULL),
    CHECK (state NOT IN ('resolved', 'closed') OR (resolved_at IS NOT NULL AND outcome IS NOT NULL)),
    CHECK (state <> 'closed' OR closed_at IS NOT NULL),
    CHECK ((state = 'cancelled') = (cancelled_at IS NOT NULL AND cancel_source IS NOT NULL))
);

-- One open incident per resident and type (care) / per subject and type (technical).
-- The predicates are repeated verbatim in the ON CONFLICT clauses of the service.
CREATE UNIQUE INDEX incidents_open_care ON incidents (resident_id, type)
    WHERE state IN ('raised', 'acknowledged', 'dispatched', 'on_scene') AND NOT technical;
CREATE UNIQUE INDEX incidents_open_technical ON incidents (subject, type)
    WHERE state IN ('raised', 'acknowledged', 'dispatched', 'on_scene') AND technical;
CREATE INDEX incidents_site_state ON incidents (site_id, state, priority, raised_at);
CREATE INDEX incidents_resident_raised ON incidents (resident_id, raised_at DESC)
    WHERE resident_id IS NOT NULL;

-- The timeline of one incident: raised, triggered (a repeat joined it), acknowledged, ...
CREATE TABLE incident_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents ON DELETE CASCADE,
    time        timestamptz NOT NULL,
    kind        text NOT NULL,
    actor       text NOT NULL,                   -- user id, 'system', device id
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, id);

-- Audit log: append-only and hash-chained.
--   hash = sha256(prev_hash || audit_entry_text(seq, time, actor, action, target, data))
-- audit_entry_text is the canonical JSON array [seq, "UTC time", actor, action, target, data]
-- in jsonb's deterministic text form; gateway.audit.verify recomputes it independently in
-- Python. The first entry's prev_hash is 64 zeros. Entries are appended only through
-- audit_append(), which takes a transaction-level advisory lock so concurrent appends
-- form one linear chain (the lock is held until the appending transaction ends).
CREATE TABLE audit_log (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time      timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL,
    data      jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash      text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_log_target ON audit_log (target, seq);

CREATE FUNCTION audit_entry_text(
    p_seq bigint, p_time timestamptz, p_actor text, p_action text, p_target text, p_data jsonb
) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_array(
        p_seq,
        to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        p_actor, p_action, p_target, p_data
    )::text
$$;

CREATE FUNCTION audit_append(p_actor text, p_action text, p_target text, p_data jsonb)
RETURNS audit_log LANGUAGE plpgsql AS $$
DECLARE
    v_prev text;
    v_seq  bigint;
    v_time timestamptz;
    v_data jsonb := coalesce(p_data, '{}'::jsonb);
    v_row  audit_log;
BEGIN
    -- Under REPEATABLE READ / SERIALIZABLE the head read below would come from the
    -- transaction's old snapshot and fork the chain: refuse rather than fork.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_append needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_xact_lock(1526595745);  -- 0x5AFE00A1: the audit chain
    SELECT hash INTO v_prev FROM audit_log ORDER BY seq DESC LIMIT 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    v_seq := nextval(pg_get_serial_sequence('audit_log', 'seq'));
    v_time := date_trunc('microseconds', clock_timestamp());
    INSERT INTO audit_log (seq, time, actor, action, target, data, prev_hash, hash)
    OVERRIDING SYSTEM VALUE
    VALUES (v_seq, v_time, p_actor, p_action, p_target, v_data, v_prev,
            encode(sha256(convert_to(
                v_prev || audit_entry_text(v_seq, v_time, p_actor, p_action, p_target, v_data),
                'UTF8')), 'hex'))
    RETURNING * INTO v_row;
    RETURN v_row;
END
$$;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
