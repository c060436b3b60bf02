"""The registry wire formats of an Avro record: the header before its schemaless Avro body.

Glue:      0x03 | compression (0x00 none, 0x05 zlib of the body) | 16-byte schema-version UUID | body
Confluent: 0x00 | 4-byte big-endian schema id | body

Constants only, so telling a framed record from JSON by its first byte loads no Avro library.
"""

GLUE_HEADER_VERSION = 0x03
COMPRESSION_NONE = 0x00
COMPRESSION_ZLIB = 0x05
GLUE_HEADER_SIZE = 18
CONFLUENT_MAGIC = 0x00
CONFLUENT_HEADER_SIZE = 5
