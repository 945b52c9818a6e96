-- insert_entities com_snowplowanalytics_snowplow_web_page_1
INSERT INTO "atomic"."com_snowplowanalytics_snowplow_web_page_1" ("schema_vendor", "schema_name", "schema_format", "schema_version", "root_id", "root_tstamp", "ref_root", "ref_tree", "ref_parent", "id")
SELECT
    'com.snowplowanalytics.snowplow',
    'web_page',
    'jsonschema',
    SPLIT_PART(d."uri", '/', 4),
    d."root_id",
    d."root_tstamp",
    'events',
    '["events","web_page"]',
    'events',
    JSON_EXTRACT_PATH_TEXT(d."data", 'id', true)
FROM "clk_entity_drain" AS d
WHERE d."reason" IS NULL AND d."uri" IN ('iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0')
