-- staged_count
SELECT COUNT(*) FROM "atomic"."events_staging"
