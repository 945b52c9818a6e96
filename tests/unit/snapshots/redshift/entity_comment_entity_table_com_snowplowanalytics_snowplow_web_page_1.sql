-- comment_entity_table com_snowplowanalytics_snowplow_web_page_1
COMMENT ON TABLE "atomic"."com_snowplowanalytics_snowplow_web_page_1" IS 'iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0'
