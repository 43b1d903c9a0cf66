-- One PostgreSQL login per service (least privilege), made once on an empty data volume after the
-- seed (files run in name order; manifests/base/seed/02-roles.sql is the same file). Dev-grade
-- passwords: change them, and the connection URLs that name them, anywhere else.
--   imagebatch         owns the database, its schema and tables: the one role that migrates
--                      (the operator in Kubernetes, the api in docker compose).
--   imagebatch_worker, imagebatch_api, imagebatch_source: the roles migration 0007 grants
--                      (imagebatch/core/migrations/0007_service_roles.sql); none owns a table.
-- Created here rather than by the migration because a migration cannot know passwords, and the
-- migrating role should not hold CREATEROLE.
DO $$
DECLARE
    login text;
BEGIN
    FOREACH login IN ARRAY ARRAY['imagebatch', 'imagebatch_worker', 'imagebatch_api',
                                 'imagebatch_source']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
            EXECUTE format('CREATE ROLE %I', login);
        END IF;
        -- (a server shared with an earlier database may have it already, as a group role)
        EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', login, login);
    END LOOP;
    EXECUTE format('ALTER DATABASE %I OWNER TO imagebatch', current_database());
END $$;
ALTER SCHEMA public OWNER TO imagebatch;
ALTER TABLE IF EXISTS images OWNER TO imagebatch;
ALTER ROLE imagebatch_source SET default_transaction_read_only = on;
