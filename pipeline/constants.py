"""Every environment variable the package reads or sets, by name, in one place.

Values are read at the edge (config resolution, handler start-up, the CLI), never at import.
"""

from __future__ import annotations

from typing import Final

# ---- ours
CONFIG_ENV_PREFIX: Final = "CLICKSTREAM_ETL__"
"""``CLICKSTREAM_ETL__<SECTION>__<KEY>`` sets one configuration key (a TOML value)."""
CONFIG_FILE_ENV: Final = "CLICKSTREAM_ETL_CONFIG"
"""Path of a TOML overlay, when ``--config`` is not given."""

LIBRARY_LOG_LEVEL_ENV: Final = "CLICKSTREAM_ETL_LIBRARY_LOG_LEVEL"
"""Level of botocore's, boto3's and urllib3's loggers in the handlers (default WARNING: at DEBUG
botocore logs request payloads, which hold log lines and addresses)."""

# ---- the Extract reconciler (extract.reconciler; pipeline.topology sets them in the deployment)
EXTRACT_FUNCTION_NAME_ENV: Final = "CLICKSTREAM_ETL_EXTRACT_FUNCTION"
"""Name of the Extract function the reconciler invokes for each object it re-drives
(default ``clickstream-etl-extract``)."""
RECONCILE_PREFIX_ENV: Final = "CLICKSTREAM_ETL_RECONCILE_PREFIX"
"""Key prefix of the log objects in ``resources.log_bucket`` (default "": the whole bucket)."""
RECONCILE_MAX_OBJECTS_ENV: Final = "CLICKSTREAM_ETL_RECONCILE_MAX_OBJECTS"
"""At most this many objects are re-driven per run (default 200); the next run goes on from there."""
RECONCILE_MIN_AGE_S_ENV: Final = "CLICKSTREAM_ETL_RECONCILE_MIN_AGE_S"
"""An object without a ledger entry is re-driven only once it is this old (seconds, default 900),
so that a notification still on its way is not raced."""

# ---- AWS Lambda's runtime
LAMBDA_FUNCTION_NAME_ENV: Final = "AWS_LAMBDA_FUNCTION_NAME"

# ---- AWS credentials (run-local sets fake ones so nothing can reach a real account)
AWS_CREDENTIAL_ENVS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# ---- Powertools' own switches
POWERTOOLS_LOG_LEVEL_ENV: Final = "POWERTOOLS_LOG_LEVEL"
POWERTOOLS_TRACE_DISABLED_ENV: Final = "POWERTOOLS_TRACE_DISABLED"
POWERTOOLS_METRICS_NAMESPACE_ENV: Final = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_METRICS_DISABLED_ENV: Final = "POWERTOOLS_METRICS_DISABLED"
METRICS_NAMESPACE: Final = "ClickstreamEtl"
"""The CloudWatch namespace of every stage's metrics."""

# ---- pyarrow
ARROW_MEMORY_POOL_ENV: Final = "ARROW_DEFAULT_MEMORY_POOL"
