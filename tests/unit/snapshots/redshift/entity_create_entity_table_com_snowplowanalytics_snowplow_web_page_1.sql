-- create_entity_table com_snowplowanalytics_snowplow_web_page_1
CREATE TABLE IF NOT EXISTS "atomic"."com_snowplowanalytics_snowplow_web_page_1" (
  "schema_vendor"  VARCHAR(128)  ENCODE ZSTD NOT NULL,
  "schema_name"    VARCHAR(128)  ENCODE ZSTD NOT NULL,
  "schema_format"  VARCHAR(128)  ENCODE ZSTD NOT NULL,
  "schema_version" VARCHAR(128)  ENCODE ZSTD NOT NULL,
  "root_id"        CHAR(36)      ENCODE RAW  NOT NULL,
  "root_tstamp"    TIMESTAMP     ENCODE ZSTD NOT NULL,
  "ref_root"       VARCHAR(255)  ENCODE ZSTD NOT NULL,
  "ref_tree"       VARCHAR(1500) ENCODE ZSTD NOT NULL,
  "ref_parent"     VARCHAR(255)  ENCODE ZSTD NOT NULL,
  "id"             VARCHAR(4096) ENCODE ZSTD NOT NULL
)
DISTSTYLE KEY
DISTKEY ("root_id")
SORTKEY ("root_tstamp")
