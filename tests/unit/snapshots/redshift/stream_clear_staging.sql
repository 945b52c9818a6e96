-- clear_staging
DELETE FROM "atomic"."events_staging"
