-- drain_batch
CREATE TEMP TABLE "clk_entity_drain" AS
SELECT q.*, CASE
        WHEN (q."problem" IS NOT NULL OR q."uri" IS NULL OR NOT (q."uri" ~ '^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z][a-zA-Z0-9_-]*/[0-9]+-[0-9]+-[0-9]+$')) THEN COALESCE(q."problem", 'not a self-describing entity')
        WHEN q."uri" = 'iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0' THEN CASE WHEN NOT IS_VALID_JSON(q."data") THEN 'the entity''s data is not a JSON object' WHEN JSON_EXTRACT_PATH_TEXT(q."data", 'id', true) IS NULL THEN 'id: required, but absent or null' WHEN OCTET_LENGTH(JSON_EXTRACT_PATH_TEXT(q."data", 'id', true)) > 4096 THEN 'id: longer than 4096 bytes' ELSE NULL END
    END AS "reason"
FROM "atomic"."events_entity_queue" AS q
WHERE (q."problem" IS NULL AND q."uri" IN ('iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0')) OR (q."problem" IS NOT NULL OR q."uri" IS NULL OR NOT (q."uri" ~ '^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z][a-zA-Z0-9_-]*/[0-9]+-[0-9]+-[0-9]+$'))
