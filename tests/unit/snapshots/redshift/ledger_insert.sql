-- ledger_insert
INSERT INTO "atomic"."load_ledger" ("prefix", "content_hash", "manifest_url", "files", "bytes", "rows_staged", "rows_rejected", "natural_duplicates", "synthetic_duplicates", "rows_inserted", "min_collector_tstamp", "max_collector_tstamp", "loaded_tstamp")
VALUES (:prefix, :content_hash, :manifest_url, CAST(:files AS INTEGER), CAST(:bytes AS BIGINT), CAST(:rows_staged AS BIGINT), CAST(:rows_rejected AS BIGINT), CAST(:natural_duplicates AS BIGINT), CAST(:synthetic_duplicates AS BIGINT), CAST(:rows_inserted AS BIGINT), CAST(NULLIF(:min_collector_tstamp, 'none') AS TIMESTAMP), CAST(NULLIF(:max_collector_tstamp, 'none') AS TIMESTAMP), GETDATE())
-- :prefix = "s3://clickstream-output/events/event_date=2024-11-15/event_hour=09/"
-- :content_hash = "ad82eaba78c1301164bab44eab528de3ef1eb5b6f9229c353be572f5a64d717a"
-- :manifest_url = "s3://clickstream-output/redshift/manifests/event_date=2024-11-15/event_hour=09/ad82eaba78c1301164bab44eab528de3ef1eb5b6f9229c353be572f5a64d717a.manifest"
-- :files = "2"
-- :bytes = "3000"
-- :rows_staged = "12"
-- :rows_rejected = "1"
-- :natural_duplicates = "2"
-- :synthetic_duplicates = "1"
-- :rows_inserted = "8"
-- :min_collector_tstamp = "2024-11-15 09:00:01"
-- :max_collector_tstamp = "2024-11-15 09:59:58"
