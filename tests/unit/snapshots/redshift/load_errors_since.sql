-- load_errors
SELECT "query_id", "start_time", TRIM("file_name"), "line_number", TRIM("column_name"), "error_code", TRIM("error_message")
FROM sys_load_error_detail
WHERE "start_time" >= CAST(:since AS TIMESTAMP) AND TRIM("file_name") LIKE :file_pattern
ORDER BY "start_time", "line_number"
LIMIT 100
-- :since = "2024-11-15 09:00:00"
-- :file_pattern = "s3://clickstream-output/firehose/%"
