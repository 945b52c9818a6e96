"""AWS adapters shared by the stages: small, with injected clients.

* :mod:`pipeline.aws.clients` -- the one client factory (retries, timeouts, endpoint);
* :mod:`pipeline.aws.errors` -- the one classifier of botocore errors (transient, throttled, terminal);
* :mod:`pipeline.aws.kinesis` -- durable PutRecords with bounded retries;
* :mod:`pipeline.aws.ledger` -- the DynamoDB ledger of objects, chunks and events;
* :mod:`pipeline.aws.badsink` -- bad rows to S3 under deterministic keys.

boto3 and botocore are imported inside functions, so importing these modules stays cheap.
"""
