"""Inflating Glue zlib bodies: the cheap path for small bodies and the bounded one agree on every input."""

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_shared.avro_reading import (
    MAX_DECOMPRESSED_BYTES,
    SMALL_ZLIB_BODY_BYTES,
    inflate,
    inflate_bounded,
)
from tributary_shared.errors import PoisonRecordError

HEADER = b"\x03\x05" + bytes(16)


def outcome(inflater, data: bytes) -> bytes | str:
    try:
        return inflater(data)
    except PoisonRecordError as error:
        return f"poison: {error.reason}"


@given(content=st.binary(max_size=2000), level=st.integers(0, 9), trailing=st.binary(max_size=8),
       cut=st.integers(0, 6))  # fmt: skip
def test_both_paths_give_the_same_record_or_the_same_reason(content, level, trailing, cut):
    stream = zlib.compress(content, level)
    data = HEADER + stream[: len(stream) - cut] + trailing
    if cut == 0 and trailing and trailing.endswith(stream[-4:]):
        return  # the one difference, by design: see the last test
    assert outcome(inflate, data) == outcome(inflate_bounded, data)


@given(content=st.binary(max_size=500), trailing=st.binary(min_size=1, max_size=8))
def test_bytes_after_the_stream_are_poison_naming_how_many(content, trailing):
    stream = zlib.compress(content)
    if trailing.endswith(stream[-4:]):  # a record ending in its stream's own checksum: the one case let pass
        return
    with pytest.raises(PoisonRecordError, match=f"{len(trailing)} bytes of garbage after"):
        inflate(HEADER + stream + trailing)


def test_a_body_just_small_enough_for_the_cheap_path_cannot_pass_the_bound():
    # Deflate's best ratio: a long run of one byte. The largest body the cheap path takes stays in bounds.
    bomb = zlib.compress(bytes(64 * MAX_DECOMPRESSED_BYTES), 9)
    assert len(bomb) > SMALL_ZLIB_BODY_BYTES  # so it goes through the bounded decompressor
    with pytest.raises(PoisonRecordError, match="inflates past"):
        inflate(HEADER + bomb)
    largest = bytes(SMALL_ZLIB_BODY_BYTES * 1000)
    assert len(zlib.compress(largest, 9)) <= SMALL_ZLIB_BODY_BYTES
    assert inflate(HEADER + zlib.compress(largest, 9)) == largest


def test_bytes_that_repeat_the_streams_checksum_pass_and_decode_to_the_stream():
    stream = zlib.compress(b"record")
    assert inflate(HEADER + stream + stream[-4:]) == b"record"
