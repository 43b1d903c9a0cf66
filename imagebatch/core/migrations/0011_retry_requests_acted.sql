-- Every `imagejobs.io/retry-failed` value acted on, not only the last (0005's retry_request):
-- "the same value is never acted on twice" holds for A, then B, then A again too.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS retry_requests TEXT[] NOT NULL DEFAULT '{}';
UPDATE batches SET retry_requests = ARRAY[retry_request]
 WHERE retry_request IS NOT NULL AND retry_requests = '{}';
