-- drain_delete
DELETE FROM "atomic"."events_entity_queue"
WHERE ("problem" IS NULL AND "uri" IN ('iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0')) OR ("problem" IS NOT NULL OR "uri" IS NULL OR NOT ("uri" ~ '^iglu:[a-zA-Z0-9._-]+/[a-zA-Z0-9_-]+/[a-zA-Z][a-zA-Z0-9_-]*/[0-9]+-[0-9]+-[0-9]+$'))
