-- create_unresolved_entities
CREATE TABLE IF NOT EXISTS "atomic"."unresolved_entities" (
    "schema_uri" VARCHAR(1024) ENCODE ZSTD,
    "root_id" VARCHAR(65535) ENCODE ZSTD NOT NULL,
    "root_tstamp" TIMESTAMP ENCODE ZSTD NOT NULL,
    "ref_root" VARCHAR(255) ENCODE ZSTD NOT NULL,
    "ref_parent" VARCHAR(255) ENCODE ZSTD NOT NULL,
    "source" VARCHAR(16) ENCODE ZSTD NOT NULL,
    "position" INTEGER ENCODE ZSTD,
    "reason" VARCHAR(1024) ENCODE ZSTD NOT NULL,
    "entity" SUPER ENCODE ZSTD,
    "entity_text" VARCHAR(65535) ENCODE ZSTD,
    "load_tstamp" TIMESTAMP ENCODE ZSTD NOT NULL
)
DISTSTYLE KEY
DISTKEY ("root_id")
SORTKEY ("root_tstamp")
