-- clear_backfill_staging
DELETE FROM "atomic"."events_backfill_staging"
