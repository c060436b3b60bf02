"""The redrive pipeline (functions/redrive, driven by statemachine/redrive.asl.json): dead-lettered records
back through the pipeline that gave them up.

The state machine lists the on-failure destination (the queue, and the failed-records bucket with
`OnFailureDestination=s3`), hands each message or object to the function and deletes (or moves) it
once the function says every record of it is settled. The function, one message at a time:

- `failure_records`: what the message is: a stream mapping's invocation record (`KinesisBatchInfo`,
  with the batch itself when it comes from S3) or an asynchronous invocation's record (the CSV
  loader's resume request); anything else is kept, with the reason;
- `stream_range`: the batch read back from its shard, rebuilt as Lambda's event records; what the
  stream has already expired is *lost to retention*, with its range;
- `replay`: each record through the pipeline's own deployed function, one record per synchronous
  invocation, as the event source mapping sends a record it has bisected down to: the same code, the
  same configuration, the same version-guarded writes;
- `quarantine`: what still fails after bounded attempts, as JSON lines in the quarantine bucket;
- `redriver`: one message settled (or kept), `tally`: a page of outcomes into the execution's
  summary; `settings`: what the function reads from its environment, once, at cold start.

It invokes the other pipelines' functions; it imports none of their code.
"""
