-- load_errors
SELECT "query_id", "start_time", TRIM("file_name"), "line_number", TRIM("column_name"), "error_code", TRIM("error_message")
FROM sys_load_error_detail
WHERE "query_id" = CAST(:query_id AS BIGINT)
ORDER BY "line_number"
LIMIT 100
-- :query_id = "4242"
