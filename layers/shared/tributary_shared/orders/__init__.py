"""The order data lake pipeline: `functions/csv_loader` and `functions/firehose_transform`.

One package for both functions because they share the lake's typing of DynamoDB images; each
handler imports only its own entry module, so the transform never loads the loader's S3 client
(this file imports nothing, for the same reason):

- `csv_loader`: the CSV loader function: an event's objects loaded, a load that runs out of time
  handed to a new invocation; `load_request` (what to load, what came of it), `loader` (one object
  streamed into the OrderTransactions table, resumable), `csv_rows` (its rows checked and typed);
- `firehose_transform`: the transform function; `lake_rows` (+ `images`): the table's change
  records → Glue-typed rows for Firehose's Parquet;
- `settings`: each function's settings, read once at cold start.
"""
