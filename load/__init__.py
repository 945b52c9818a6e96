"""Load: encode canonical events for the sinks (Parquet here; pyarrow is imported only in this package)."""
