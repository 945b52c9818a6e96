-- ledger_lookup
SELECT "prefix", "content_hash" FROM "atomic"."load_ledger" WHERE "prefix" LIKE :root_pattern
-- :root_pattern = "s3://clickstream-output/events/%"
