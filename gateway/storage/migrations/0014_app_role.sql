-- Separate owner and application roles.
--
-- The owner role (database.owner_user) owns every table and runs the migrations
-- (`safehome db migrate`). The gateway connects as the application role (database.user),
-- which owns nothing: it cannot ALTER a table (so it cannot disable audit_log's append-only
-- triggers), and it gets only the privileges below. After migrating, `safehome db migrate`
-- calls safehome_grant_app(<application role>) (idempotent, every run).
--
-- Application role privileges:
--   * SELECT, INSERT, UPDATE, DELETE on the tables of schema public; no TRUNCATE, REFERENCES
--     or TRIGGER;
--   * audit_log: SELECT and INSERT only (appends go through audit_append, and the hash chain
--     exposes any row not made by it);
--   * schema_migrations: SELECT only (the gateway's start-up schema check);
--   * USAGE, SELECT on sequences (identity columns; audit_append's nextval);
--   * EXECUTE on safehome_drop_chunks (retention on the Apache edition, below).
-- ALTER DEFAULT PRIVILEGES gives the same table and sequence grants on everything the owner
-- creates later (later migrations need no grants of their own; audit-like tables that must
-- be append-only should REVOKE UPDATE, DELETE from the role in safehome_grant_app).
--
-- Retention: drop_chunks needs the hypertable's owner. safehome_drop_chunks runs it as the
-- owner (SECURITY DEFINER, fixed search_path) for the time-series tables only, and never
-- for less than one day of history.

CREATE FUNCTION safehome_drop_chunks(p_table text, p_older_than interval)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_schema name;
    v_dropped integer;
BEGIN
    IF p_table NOT IN ('readings', 'accel', 'device_events', 'device_state', 'dead_letters') THEN
        RAISE EXCEPTION 'safehome_drop_chunks: % is not a time-series table', p_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_older_than IS NULL OR p_older_than < interval '1 day' THEN
        RAISE EXCEPTION 'safehome_drop_chunks: keep at least one day of %, not %',
            p_table, p_older_than USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT n.nspname INTO v_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'timescaledb';
    IF v_schema IS NULL THEN
        RAISE EXCEPTION 'safehome_drop_chunks: timescaledb is not installed';
    END IF;
    EXECUTE format(
        'SELECT count(*) FROM %I.drop_chunks(%L::regclass, older_than => now() - %L::interval)',
        v_schema, 'public.' || p_table, p_older_than
    ) INTO v_dropped;
    RETURN v_dropped;
END
$$;
REVOKE EXECUTE ON FUNCTION safehome_drop_chunks(text, interval) FROM PUBLIC;

CREATE FUNCTION safehome_grant_app(p_role name) RETURNS void LANGUAGE plpgsql
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
    -- An older installation connected as one role that owned everything: an application
    -- role that still owns tables keeps an owner's rights. Transfer them first (superuser).
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
    -- Nobody but the owner creates objects in public (PostgreSQL 15's default, kept on
    -- databases created by older versions): no look-alike functions or tables.
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I', p_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', p_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I',
                   p_role);
    EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM %I',
                   p_role);
    EXECUTE format('REVOKE UPDATE, DELETE ON audit_log FROM %I', p_role);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM %I', p_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION safehome_drop_chunks(text, interval) TO %I',
                   p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA public '
                   'GRANT USAGE, SELECT ON SEQUENCES TO %I', p_role);
END
$$;
REVOKE EXECUTE ON FUNCTION safehome_grant_app(name) FROM PUBLIC;
