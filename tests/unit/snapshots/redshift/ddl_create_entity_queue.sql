-- create_entity_queue
CREATE TABLE IF NOT EXISTS "atomic"."events_entity_queue" (
    "root_id" VARCHAR(65535) ENCODE ZSTD,
    "root_tstamp" TIMESTAMP ENCODE ZSTD,
    "source" VARCHAR(16) ENCODE ZSTD,
    "position" INTEGER ENCODE ZSTD,
    "uri" VARCHAR(65535) ENCODE ZSTD,
    "data" VARCHAR(65535) ENCODE ZSTD,
    "entity" VARCHAR(65535) ENCODE ZSTD,
    "problem" VARCHAR(256) ENCODE ZSTD,
    "queued_tstamp" TIMESTAMP ENCODE ZSTD
)
DISTSTYLE EVEN
