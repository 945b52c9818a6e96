-- lock
LOCK "atomic"."events", "atomic"."events_staging", "atomic"."events_rejected", "atomic"."events_entity_queue"
