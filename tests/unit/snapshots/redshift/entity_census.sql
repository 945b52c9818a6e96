-- entity_census
SELECT q."uri", COUNT(*) FROM "atomic"."events_entity_queue" AS q
WHERE q."problem" IS NULL AND q."uri" ~ '^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z][a-zA-Z0-9_-]*/[0-9]+-[0-9]+-[0-9]+$'
GROUP BY q."uri"
ORDER BY q."uri"
