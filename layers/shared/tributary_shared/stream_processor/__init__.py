"""The stream processor pipeline (functions/stream_processor): Kinesis records → a DynamoDB read model.

`processor` decodes, validates and writes one batch on the toolkit's Kinesis batch skeleton;
`settings` is what the function reads from its environment, once, at cold start.
"""
