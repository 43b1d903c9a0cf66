-- The failure reasons per batch (migration 0005) are kept by the jobs triggers with the
-- privileges of whoever changed jobs: the worker when it records a failure, the api when it
-- writes a task's row. Migration 0007's rule: a table added later is granted here.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_worker') THEN
        GRANT SELECT, INSERT, UPDATE ON batch_failures TO imagebatch_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_api') THEN
        GRANT SELECT, INSERT, UPDATE ON batch_failures TO imagebatch_api;
    END IF;
END $$;
