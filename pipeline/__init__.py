"""clickstream-etl: CloudFront clickstream logs to Snowplow-compatible canonical events."""

__version__ = "0.1.0"
ARTIFACT = "clickstream-etl"
