-- queue_entities
INSERT INTO "atomic"."events_entity_queue" ("root_id", "root_tstamp", "source", "position", "uri", "data", "entity", "problem", "queued_tstamp")
SELECT e."root_id", e."root_tstamp", e."source", e."position",
    CASE WHEN e."problem" IS NULL AND IS_VALID_JSON(e."entity") THEN JSON_EXTRACT_PATH_TEXT(e."entity", 'schema', true) END,
    CASE WHEN e."problem" IS NULL AND IS_VALID_JSON(e."entity") THEN JSON_EXTRACT_PATH_TEXT(e."entity", 'data', true) END,
    e."entity", e."problem", GETDATE()
FROM (
    SELECT a."event_id" AS "root_id", a."collector_tstamp" AS "root_tstamp", 'derived_contexts' AS "source",
        n."i" AS "position", JSON_EXTRACT_ARRAY_ELEMENT_TEXT(a."items", n."i", true) AS "entity", CAST(NULL AS VARCHAR(256)) AS "problem"
    FROM (
        SELECT r."event_id", r."collector_tstamp", JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true) AS "items", CASE WHEN IS_VALID_JSON(r."derived_contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true), true) END END AS "length"
        FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
        WHERE r."derived_contexts" IS NOT NULL
    ) AS a
    JOIN "atomic"."events_entity_slots" AS n ON n."i" < a."length"
    WHERE a."length" <= 1024
    UNION ALL
    SELECT r."event_id", r."collector_tstamp", 'derived_contexts', CAST(NULL AS INTEGER), r."derived_contexts",
        CASE WHEN CASE WHEN IS_VALID_JSON(r."derived_contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true), true) END END IS NULL THEN 'derived_contexts is not a JSON object with a data array'
            ELSE 'derived_contexts holds more than 1024 entities' END
    FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
    WHERE r."derived_contexts" IS NOT NULL AND COALESCE(CASE WHEN IS_VALID_JSON(r."derived_contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."derived_contexts", 'data', true), true) END END, 1024 + 1) > 1024
    UNION ALL
    SELECT a."event_id" AS "root_id", a."collector_tstamp" AS "root_tstamp", 'contexts' AS "source",
        n."i" AS "position", JSON_EXTRACT_ARRAY_ELEMENT_TEXT(a."items", n."i", true) AS "entity", CAST(NULL AS VARCHAR(256)) AS "problem"
    FROM (
        SELECT r."event_id", r."collector_tstamp", JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true) AS "items", CASE WHEN IS_VALID_JSON(r."contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true), true) END END AS "length"
        FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
        WHERE r."contexts" IS NOT NULL
    ) AS a
    JOIN "atomic"."events_entity_slots" AS n ON n."i" < a."length"
    WHERE a."length" <= 1024
    UNION ALL
    SELECT r."event_id", r."collector_tstamp", 'contexts', CAST(NULL AS INTEGER), r."contexts",
        CASE WHEN CASE WHEN IS_VALID_JSON(r."contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true), true) END END IS NULL THEN 'contexts is not a JSON object with a data array'
            ELSE 'contexts holds more than 1024 entities' END
    FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
    WHERE r."contexts" IS NOT NULL AND COALESCE(CASE WHEN IS_VALID_JSON(r."contexts") THEN CASE WHEN IS_VALID_JSON_ARRAY(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true)) THEN JSON_ARRAY_LENGTH(JSON_EXTRACT_PATH_TEXT(r."contexts", 'data', true), true) END END, 1024 + 1) > 1024
    UNION ALL
    SELECT r."event_id", r."collector_tstamp", 'unstruct_event', 0, CASE WHEN IS_VALID_JSON(r."unstruct_event") THEN JSON_EXTRACT_PATH_TEXT(r."unstruct_event", 'data', true) END,
        CAST(NULL AS VARCHAR(256))
    FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
    WHERE CASE WHEN IS_VALID_JSON(r."unstruct_event") THEN JSON_EXTRACT_PATH_TEXT(r."unstruct_event", 'data', true) END IS NOT NULL
    UNION ALL
    SELECT r."event_id", r."collector_tstamp", 'unstruct_event', CAST(NULL AS INTEGER), r."unstruct_event",
        'unstruct_event is not a JSON object with a data member'
    FROM (
    SELECT r.* FROM "clk_merge_rows" AS r
    LEFT JOIN "atomic"."events" AS e ON e."event_id" = r."event_id" AND COALESCE(e."event_fingerprint", '') = COALESCE(r."event_fingerprint", '')
    WHERE e."event_id" IS NULL
) AS r
    WHERE r."unstruct_event" IS NOT NULL AND (CASE WHEN IS_VALID_JSON(r."unstruct_event") THEN JSON_EXTRACT_PATH_TEXT(r."unstruct_event", 'data', true) END) IS NULL
) AS e
