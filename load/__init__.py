"""Load: encode canonical events and deliver them (S3 Parquet, a local dataset, Redshift); pyarrow only here."""
