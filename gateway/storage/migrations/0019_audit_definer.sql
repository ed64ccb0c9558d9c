-- The audit trail cannot be forged from inside (issue 10 §4), and test mode ends with its
-- steps (issue 10 §5).
--
-- * audit_append runs as the owner (SECURITY DEFINER, fixed search_path): it alone computes
--   seq, time, prev_hash and hash. The application role gets EXECUTE on it and loses INSERT
--   on audit_log and every right on its sequence (safehome_grant_app below), so a direct
--   INSERT ... OVERRIDING SYSTEM VALUE as the application role fails.
-- * A BEFORE INSERT trigger refuses any insert not made as the table's owner (that is:
--   through audit_append), whatever the grants say, as defence in depth.
-- * A superuser (or the owner) can still rewrite the table and recompute the plain hashes:
--   gateway.audit_anchor writes the chain head with an HMAC under a key the database does
--   not hold to a file outside it, and `safehome audit verify` checks the chain against it.

CREATE OR REPLACE FUNCTION audit_entry_text(
    p_seq bigint, p_time timestamptz, p_actor text, p_action text, p_target text, p_data jsonb
) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_array(
        p_seq,
        to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        p_actor, p_action, p_target, p_data
    )::text
$$;

CREATE OR REPLACE FUNCTION audit_append(p_actor text, p_action text, p_target text, p_data jsonb)
RETURNS audit_log LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_prev text;
    v_seq  bigint;
    v_time timestamptz;
    v_data jsonb := coalesce(p_data, '{}'::jsonb);
    v_row  audit_log;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit_append needs READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    END IF;
    IF p_actor IS NULL OR p_action IS NULL OR p_target IS NULL
       OR length(p_actor) > 200 OR length(p_action) > 200 OR length(p_target) > 400 THEN
        RAISE EXCEPTION 'audit_append: actor, action and target are required (at most 200/200/400 characters)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(1526595745);  -- 0x5AFE00A1: the audit chain
    SELECT hash INTO v_prev FROM audit_log ORDER BY seq DESC LIMIT 1;
    v_prev := coalesce(v_prev, repeat('0', 64));
    v_seq := nextval(pg_get_serial_sequence('public.audit_log', 'seq'));
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
REVOKE EXECUTE ON FUNCTION audit_append(text, text, text, jsonb) FROM PUBLIC;

CREATE FUNCTION audit_log_owner_only() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(c.relowner) FROM pg_class c
                        WHERE c.oid = TG_RELID) THEN
        RAISE EXCEPTION 'audit_log: append through audit_append(), not INSERT (as %)',
            current_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_insert_via_append BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_owner_only();

-- Test mode ends when the installer's active steps are done (gateway.acceptance).
ALTER TABLE acceptance_tests ADD COLUMN steps_done_at timestamptz;
CREATE INDEX acceptance_tests_running ON acceptance_tests (device_id, expires_at)
    WHERE finished_at IS NULL AND steps_done_at IS NULL;

-- safehome_grant_app as in 0014, plus: audit_log is read-only for the application role
-- (appends through audit_append only) and its sequence is out of reach.
CREATE OR REPLACE FUNCTION safehome_grant_app(p_role name) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_owned text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'application role % does not exist', p_role;
    END IF;
    IF p_role = current_user OR pg_has_role(p_role, current_user, 'MEMBER') THEN
        RAISE EXCEPTION 'application role % must not be (or be a member of) the owner role %',
            p_role, current_user;
    END IF;
    SELECT string_agg(c.relname, ', ' ORDER BY c.relname) INTO v_owned
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_roles r ON r.oid = c.relowner
    WHERE n.nspname = 'public' AND r.rolname = p_role;
    IF v_owned IS NOT NULL THEN
        RAISE EXCEPTION 'application role % still owns % in database %', p_role, v_owned,
            current_database()
            USING HINT = format('as a superuser, in that database: REASSIGN OWNED BY %I TO %I;',
                                p_role, current_user);
    END IF;
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I', p_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', p_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I',
                   p_role);
    EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM %I',
                   p_role);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON audit_log FROM %I', p_role);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM %I', p_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', p_role);
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I',
                   pg_get_serial_sequence('public.audit_log', 'seq'), p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION audit_append(text, text, text, jsonb) TO %I',
                   p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION safehome_drop_chunks(text, interval) TO %I',
                   p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public '
                   'GRANT USAGE, SELECT ON SEQUENCES TO %I', p_role);
END
$$;
REVOKE EXECUTE ON FUNCTION safehome_grant_app(name) FROM PUBLIC;
