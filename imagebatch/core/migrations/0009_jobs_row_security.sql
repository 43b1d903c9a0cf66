-- The api may not touch batch rows it does not own (DESIGN.md "⚑ Security"): PostgreSQL enforces
-- it with row-level security on `jobs`. Migration 0007 grants the api SELECT, INSERT, UPDATE and
-- DELETE on `jobs` for its tasks, uploads and /enqueue's seed rows; the policies below narrow its
-- writes to rows whose kind is not 'batch' (the operator's and the workers' batch items), while it
-- still reads every row (/batches/{name}/items and /manifest read batch items).
--
--   jobs_all:             permissive, every role, every row: what each role may do stays what its
--                         grants say. The worker keeps full row access through it.
--   jobs_api_*:           restrictive, imagebatch_api (and its login members) only: INSERT,
--                         UPDATE and DELETE only where kind <> 'batch', and an UPDATE may not
--                         turn a row into a batch item.
-- The table's owner (the migrating role: the operator in Kubernetes) bypasses row security, as do
-- superusers; no FORCE. Cost for the other roles: the planner folds jobs_all's `true` away.
-- The api's policies are made only when the role exists, like 0007's grants; a server whose
-- administrator creates imagebatch_api later re-runs this file's statements after 0007's grants.
ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS jobs_all ON jobs;
CREATE POLICY jobs_all ON jobs AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'imagebatch_api') THEN
        DROP POLICY IF EXISTS jobs_api_insert ON jobs;
        DROP POLICY IF EXISTS jobs_api_update ON jobs;
        DROP POLICY IF EXISTS jobs_api_delete ON jobs;
        CREATE POLICY jobs_api_insert ON jobs AS RESTRICTIVE FOR INSERT TO imagebatch_api
            WITH CHECK (kind <> 'batch');
        CREATE POLICY jobs_api_update ON jobs AS RESTRICTIVE FOR UPDATE TO imagebatch_api
            USING (kind <> 'batch') WITH CHECK (kind <> 'batch');
        CREATE POLICY jobs_api_delete ON jobs AS RESTRICTIVE FOR DELETE TO imagebatch_api
            USING (kind <> 'batch');
    END IF;
END $$;
