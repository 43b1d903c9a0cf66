-- Least privilege per service: one group role each, holding only what that service's statements
-- need. Login roles (with passwords) are made members of these, or are these: the dev manifests'
-- and docker compose's Postgres init (02-roles.sql) create them with LOGIN before any service
-- starts. The roles are created here only when the migrating role may create roles (a superuser,
-- as in the test ground); otherwise whoever administers the server creates them, and the grants
-- below follow once they exist (they are granted by the tables' owner: the migrating role).
--
-- None of them owns a table, so none may DROP or ALTER one.
--   imagebatch_worker: records outcomes in jobs, marks seed rows processed, reports outages;
--                      never reads uploads (the worker reads upload files from the store).
--   imagebatch_api:    tasks, uploads and /enqueue; reads batch rows, never writes them.
--   imagebatch_source: read-only, the seed's `images` only (a batch's SOURCE_DATABASE_URL).
-- A later migration that adds a table grants these roles what they need on it.
DO $$
DECLARE
    may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles
                            WHERE rolname = current_user);
    service text;
BEGIN
    FOREACH service IN ARRAY ARRAY['imagebatch_worker', 'imagebatch_api', 'imagebatch_source']
    LOOP
        IF may_create AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = service) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', service);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it at the same moment
            END;
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_worker') THEN
        GRANT SELECT ON schema_migrations TO imagebatch_worker;
        GRANT SELECT, INSERT, UPDATE ON jobs TO imagebatch_worker;
        GRANT SELECT ON images TO imagebatch_worker;
        GRANT UPDATE (processed) ON images TO imagebatch_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON batch_outages TO imagebatch_worker;
        -- The jobs triggers keep batch_counts with the privileges of whoever changed jobs.
        GRANT SELECT, INSERT, UPDATE ON batch_counts TO imagebatch_worker;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_api') THEN
        GRANT SELECT ON schema_migrations TO imagebatch_api;
        GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO imagebatch_api;
        GRANT SELECT, INSERT ON uploads TO imagebatch_api;
        GRANT SELECT ON images, batches, batch_outages TO imagebatch_api;
        -- /enqueue claims seed rows with FOR UPDATE, which needs UPDATE on some column.
        GRANT UPDATE (processed) ON images TO imagebatch_api;
        GRANT SELECT, INSERT, UPDATE ON batch_counts TO imagebatch_api;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_source') THEN
        GRANT SELECT ON images TO imagebatch_source;
    END IF;
END $$;
