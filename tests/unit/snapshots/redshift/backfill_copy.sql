-- copy
COPY "atomic"."events_backfill_staging"
FROM 's3://clickstream-output/redshift/manifests/event_date=2024-11-15/event_hour=09/ad82eaba78c1301164bab44eab528de3ef1eb5b6f9229c353be572f5a64d717a.manifest'
IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy'
FORMAT AS PARQUET
MANIFEST
