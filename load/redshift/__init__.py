"""The Redshift load path: plans as values, then the executors that run them.

Plans (no AWS, every function returns :class:`~load.redshift.statements.Statement` values
or plain data):

* :mod:`~load.redshift.identifiers` -- safe SQL identifiers and the configured table names;
* :mod:`~load.redshift.statements` -- statements and transactions as values;
* :mod:`~load.redshift.columns` and :mod:`~load.redshift.ddl` -- the table layout and DDL,
  derived from the canonical schema, so the DDL, the Firehose column list and the merge can
  never disagree with it;
* :mod:`~load.redshift.merge` -- the deduplicating merge of a staging table into the events table;
* :mod:`~load.redshift.firehose_destination` -- Firehose's COPY into the stream staging table;
* :mod:`~load.redshift.load_errors` -- COPY load errors from ``sys_load_error_detail``;
* :mod:`~load.redshift.backfill_plan` and :mod:`~load.redshift.ledger` -- the backfill's
  partitions, manifests and COPY, and the ledger of what is loaded.

Execution: :mod:`~load.redshift.executor` (the Data API executor), and the two steps that
use it, :mod:`~load.redshift.stream_load` (the scheduled loader) and
:mod:`~load.redshift.backfill_load` (``clickstream-etl redshift load``).
"""
