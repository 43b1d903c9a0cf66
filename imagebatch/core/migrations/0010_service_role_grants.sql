-- Migrations 0007-0009 grant the service roles what they need (and give imagebatch_api its row
-- policies) only if the roles exist when those migrations run, which is once. A server whose
-- administrator creates a role later would leave it with nothing (or, granted by hand, without
-- the api's row policies). So every grant and policy lives here in one function, applied to the
-- roles that exist, each recorded in `service_role_grants`: the owner's start-up calls it when a
-- service role exists that is not recorded yet (imagebatch.core.db.grant_new_service_roles), and
-- an administrator may call it at any time: SELECT imagebatch_grant_service_roles();
-- A later migration that adds a table replaces this function with one that grants it too.
CREATE TABLE IF NOT EXISTS service_role_grants (
    role TEXT PRIMARY KEY,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION imagebatch_grant_service_roles() RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_worker') THEN
        GRANT SELECT ON schema_migrations TO imagebatch_worker;
        GRANT SELECT, INSERT, UPDATE ON jobs TO imagebatch_worker;
        GRANT SELECT ON images TO imagebatch_worker;
        GRANT UPDATE (processed) ON images TO imagebatch_worker;
        GRANT SELECT, INSERT, UPDATE, DELETE ON batch_outages TO imagebatch_worker;
        GRANT SELECT, INSERT, UPDATE ON batch_counts, batch_failures TO imagebatch_worker;
        INSERT INTO service_role_grants (role) VALUES ('imagebatch_worker')
            ON CONFLICT (role) DO UPDATE SET granted_at = now();
        RETURN NEXT 'imagebatch_worker';
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_api') THEN
        GRANT SELECT ON schema_migrations TO imagebatch_api;
        GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO imagebatch_api;
        GRANT SELECT, INSERT ON uploads TO imagebatch_api;
        GRANT SELECT ON images, batches, batch_outages TO imagebatch_api;
        GRANT UPDATE (processed) ON images TO imagebatch_api;
        GRANT SELECT, INSERT, UPDATE ON batch_counts, batch_failures TO imagebatch_api;
        -- Migration 0009's restrictive policies: the api never writes a batch item.
        DROP POLICY IF EXISTS jobs_api_insert ON jobs;
        DROP POLICY IF EXISTS jobs_api_update ON jobs;
        DROP POLICY IF EXISTS jobs_api_delete ON jobs;
        CREATE POLICY jobs_api_insert ON jobs AS RESTRICTIVE FOR INSERT TO imagebatch_api
            WITH CHECK (kind <> 'batch');
        CREATE POLICY jobs_api_update ON jobs AS RESTRICTIVE FOR UPDATE TO imagebatch_api
            USING (kind <> 'batch') WITH CHECK (kind <> 'batch');
        CREATE POLICY jobs_api_delete ON jobs AS RESTRICTIVE FOR DELETE TO imagebatch_api
            USING (kind <> 'batch');
        INSERT INTO service_role_grants (role) VALUES ('imagebatch_api')
            ON CONFLICT (role) DO UPDATE SET granted_at = now();
        RETURN NEXT 'imagebatch_api';
    END IF;

    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_source') THEN
        GRANT SELECT ON images TO imagebatch_source;
        INSERT INTO service_role_grants (role) VALUES ('imagebatch_source')
            ON CONFLICT (role) DO UPDATE SET granted_at = now();
        RETURN NEXT 'imagebatch_source';
    END IF;
END $$;

SELECT imagebatch_grant_service_roles();
