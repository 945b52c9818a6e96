-- create_ledger
CREATE TABLE IF NOT EXISTS "atomic"."load_ledger" (
    "prefix" VARCHAR(1024) ENCODE ZSTD NOT NULL,
    "content_hash" CHAR(64) ENCODE ZSTD NOT NULL,
    "manifest_url" VARCHAR(1024) ENCODE ZSTD,
    "files" INTEGER ENCODE ZSTD,
    "bytes" BIGINT ENCODE ZSTD,
    "rows_staged" BIGINT ENCODE ZSTD,
    "rows_rejected" BIGINT ENCODE ZSTD,
    "natural_duplicates" BIGINT ENCODE ZSTD,
    "synthetic_duplicates" BIGINT ENCODE ZSTD,
    "rows_inserted" BIGINT ENCODE ZSTD,
    "min_collector_tstamp" TIMESTAMP ENCODE ZSTD,
    "max_collector_tstamp" TIMESTAMP ENCODE ZSTD,
    "loaded_tstamp" TIMESTAMP ENCODE ZSTD NOT NULL
)
DISTSTYLE ALL
SORTKEY ("prefix")
