-- lock
LOCK "atomic"."events_entity_queue", "atomic"."unresolved_entities", "atomic"."com_snowplowanalytics_snowplow_web_page_1"
