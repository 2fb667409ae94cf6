-- Finance reads the ledger in SQL through `boomerang finance sql`, as this role: SELECT on
-- every table and view of the ledger, nothing else. The connecting user becomes a member so
-- the command can SET ROLE to it. On a server where the user may not create roles the
-- migration still applies and the command says the role is missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'boomerang_finance') THEN
        CREATE ROLE boomerang_finance NOLOGIN;
    END IF;
    EXECUTE format('GRANT boomerang_finance TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO boomerang_finance', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO boomerang_finance',
                   current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES'
                   ' TO boomerang_finance', current_schema());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'boomerang_finance not set up: %', SQLERRM;
END
$$;

-- the statement lines finance and sellers see, one row per line
CREATE VIEW statement_lines AS
SELECT s.cycle_id, s.market, s.seller_id, s.currency, l.value->>'entry_id' AS entry_id,
       l.value->>'return_id' AS return_id, l.value->>'order_ref' AS order_ref,
       l.value->>'sku' AS sku, l.value->>'line_type' AS line_type,
       l.value->>'description' AS description,
       (l.value->>'amount_minor')::bigint AS amount_minor,
       to_timestamp((l.value->>'booked_at_ms')::bigint / 1000.0) AS booked_at
FROM statements s, jsonb_array_elements(s.lines) AS l;
GRANT SELECT ON statement_lines TO boomerang_finance;
