"""Round trips of the log's framing (typedstore._format) and of the codec (typedstore._codec).

One class per promise, in file order:

- ``TestFrames``: a frame is valid only at its offset, whole and unchanged.
- ``TestBodies``: record bodies round-trip; anything else is rejected.
- ``TestHeader``: the header round-trips; damage is detected.
- ``TestCodecRoundTrips``: keys and values decode to what was given.
- ``TestCodecErrors``: the codec's own errors, never msgpack's.
- ``TestStrKeyFastDecode``: str keys decode as msgpack decodes them.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import uuid
from decimal import Decimal
from typing import Any

import msgpack
import pydantic
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.models import Point, User
from tests.strategies import (
    frame_bodies,
    header_metas,
    msgpack_ints,
    points,
    record_keys,
    record_ops,
    record_values,
    users,
)
from typedstore import EncodingError, _format
from typedstore._codec import Codec, RecordDecodeError, unpack
from typedstore._format import (
    FRAME_OVERHEAD,
    FormatError,
    Op,
    batch_body,
    decode_body,
    decode_header,
    encode_frame,
    encode_header,
    frame_body,
    insert_body,
    read_frame,
    remove_body,
)

paddings = st.binary(max_size=40)


class TestFrames:
    """A frame reads back only at the offset it was written for, whole and unchanged."""

    @given(prefix=paddings, body=frame_bodies, suffix=paddings)
    def test_frame_round_trips_at_its_offset(
        self, prefix: bytes, body: bytes, suffix: bytes
    ) -> None:
        """A frame written at an offset reads back there, with its body, whatever surrounds it."""
        offset = len(prefix)
        buf = prefix + encode_frame(body, offset) + suffix
        end = read_frame(buf, offset)
        assert end == offset + FRAME_OVERHEAD + len(body)
        assert bytes(frame_body(buf, offset, end)) == body

    @given(body=frame_bodies, offset=st.integers(0, 4096), shift=st.integers(-4096, 4096))
    def test_frame_is_invalid_away_from_its_offset(
        self, body: bytes, offset: int, shift: int
    ) -> None:
        """A frame copied to any other offset than the one it was encoded for does not validate."""
        assume(shift != 0 and offset + shift >= 0)
        frame = encode_frame(body, offset)
        moved = offset + shift
        assert read_frame(bytes(moved) + frame, moved) == -1

    @given(body=frame_bodies, data=st.data())
    def test_cut_frame_is_invalid(self, body: bytes, data: st.DataObject) -> None:
        """Every proper prefix of a frame is rejected."""
        frame = encode_frame(body, 0)
        cut = data.draw(st.integers(0, len(frame) - 1), label="cut")
        assert read_frame(frame[:cut], 0) == -1

    @given(body=frame_bodies, data=st.data())
    def test_changed_byte_in_frame_is_detected(self, body: bytes, data: st.DataObject) -> None:
        """Changing any one byte of a frame, checksum and length included, makes it invalid."""
        frame = bytearray(encode_frame(body, 0))
        position = data.draw(st.integers(0, len(frame) - 1), label="position")
        frame[position] ^= data.draw(st.integers(1, 255), label="xor")
        assert read_frame(bytes(frame), 0) == -1


def _op_body(key: bytes, value: bytes | None, collection: int = 0) -> bytes:
    body = remove_body(key) if value is None else insert_body(key, value)
    return body if collection == 0 else _format.collection_body(collection, body)


def _encode_ops(kind: int, ops: list[Op]) -> bytes:
    bodies = [_op_body(op.key, op.value, op.collection) for op in ops]
    return batch_body(bodies) if kind == 3 else bodies[0]


collection_ids = st.integers(min_value=0, max_value=2**32 - 1)


class TestBodies:
    """Record bodies decode to the operations encoded, and anything else is rejected."""

    @given(key=record_keys, value=record_values)
    def test_insert_body_round_trips(self, key: bytes, value: bytes) -> None:
        """An insert body decodes to its key and value."""
        assert decode_body(memoryview(insert_body(key, value))) == [Op(key, value)]

    @given(key=record_keys)
    def test_remove_body_round_trips(self, key: bytes) -> None:
        """A remove body decodes to its key and no value."""
        assert decode_body(memoryview(remove_body(key))) == [Op(key, None)]

    @given(ops=st.lists(record_ops, min_size=1, max_size=12))
    def test_batch_body_round_trips_in_order(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        """A batch body decodes to its inserts and removes, in order."""
        body = batch_body(_op_body(key, value) for key, value in ops)
        assert decode_body(memoryview(body)) == [Op(key, value) for key, value in ops]

    @given(ops=st.lists(st.tuples(record_ops, collection_ids), min_size=1, max_size=12))
    def test_collection_records_round_trip_alone_and_in_a_batch(
        self, ops: list[tuple[tuple[bytes, bytes | None], int]]
    ) -> None:
        """Operations on any collections decode to their key, value and collection id."""
        expected = [Op(key, value, collection) for (key, value), collection in ops]
        bodies = [_op_body(key, value, collection) for (key, value), collection in ops]
        assert decode_body(memoryview(bodies[0])) == expected[:1]
        assert decode_body(memoryview(batch_body(bodies))) == expected

    @given(ops=st.lists(record_ops, min_size=1, max_size=3))
    def test_collection_record_holding_a_batch_is_rejected(
        self, ops: list[tuple[bytes, bytes | None]]
    ) -> None:
        """A collection record wraps one insert or remove, never a batch."""
        inner = batch_body(_op_body(key, value) for key, value in ops)
        with pytest.raises(FormatError, match="neither an insert nor a remove"):
            decode_body(memoryview(_format.collection_body(1, inner)))

    def test_collection_record_naming_collection_0_is_rejected(self) -> None:
        """Collection 0's operations are bare records, so each record has one encoding."""
        body = b"\x05" + bytes(4) + insert_body(b"k", b"v")
        with pytest.raises(FormatError, match="collection 0"):
            decode_body(memoryview(body))

    @given(st.binary(min_size=1), st.integers(min_value=0, max_value=_format.GENERATIONS - 1))
    def test_generation_tag_round_trips(self, body: bytes, generation: int) -> None:
        """A body tagged with a schema generation reads back its kind and that generation."""
        kind_byte = body[0] & 0x07
        tagged = _format.tag(bytes((kind_byte,)) + body[1:], generation)
        assert _format.kind_of(memoryview(tagged)) == (kind_byte, generation)
        assert tagged[1:] == body[1:]

    def test_empty_batch_is_rejected(self) -> None:
        """A batch of no operations is not a record replay accepts."""
        with pytest.raises(FormatError, match="impossible length"):
            decode_body(memoryview(batch_body([])))

    @given(ops=st.lists(record_ops, min_size=1, max_size=3))
    def test_nested_batch_is_rejected(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        """A batch that contains a batch is rejected."""
        inner = batch_body(_op_body(key, value) for key, value in ops)
        with pytest.raises(FormatError, match="impossible operation"):
            decode_body(memoryview(batch_body([inner])))

    @given(kind=st.sampled_from([1, 2, 3, 5, 0, 4, 255]), rest=st.binary(max_size=60))
    def test_any_body_decodes_canonically_or_is_rejected(self, kind: int, rest: bytes) -> None:
        """Arbitrary body bytes raise FormatError or decode to operations that encode back to
        them."""
        body = bytes([kind]) + rest
        try:
            ops = decode_body(memoryview(body))
        except FormatError:
            return
        assert _encode_ops(kind, ops) == body


class TestHeader:
    """A header decodes to its metadata, and a cut or changed one is rejected."""

    @given(meta=header_metas, rest=paddings)
    def test_header_round_trips(self, meta: bytes, rest: bytes) -> None:
        """A header decodes to its metadata and its end, whatever follows it."""
        header = encode_header(meta)
        assert decode_header(header + rest) == (meta, len(header))

    @given(meta=header_metas, data=st.data())
    def test_cut_header_is_rejected(self, meta: bytes, data: st.DataObject) -> None:
        """Every proper prefix of a header is rejected."""
        header = encode_header(meta)
        cut = data.draw(st.integers(0, len(header) - 1), label="cut")
        with pytest.raises(FormatError, match=r"magic|cut short"):
            decode_header(header[:cut])

    @given(meta=header_metas, data=st.data())
    def test_changed_byte_in_header_is_detected(self, meta: bytes, data: st.DataObject) -> None:
        """Changing any one byte of a header, followed by records or not, is detected."""
        header = encode_header(meta)
        buf = bytearray(header + data.draw(paddings, label="rest"))
        position = data.draw(st.integers(0, len(header) - 1), label="position")
        buf[position] ^= data.draw(st.integers(1, 255), label="xor")
        with pytest.raises(FormatError, match=r"magic|version|damaged|mismatch"):
            decode_header(bytes(buf))


class Color(enum.Enum):
    """A plain enum for codec keys and values."""

    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Item:
    """A mutable dataclass."""

    name: str
    qty: int


datetimes_with_zones = st.datetimes(
    timezones=st.builds(
        datetime.timezone,
        st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: datetime.timedelta(minutes=m)),
    )
)
"""Aware datetimes whose offsets are whole minutes."""


@dataclasses.dataclass(frozen=True)
class CodecCase:
    """A key type and a value type with strategies for them."""

    key_type: Any
    value_type: Any
    keys: st.SearchStrategy[Any]
    values: st.SearchStrategy[Any]
    canonical: bool = True
    """Whether a value's bytes are a function of the value (not so for sets: order varies)."""


CODEC_CASES = {
    "str-int": CodecCase(str, int, st.text(), msgpack_ints),
    "str-user": CodecCase(str, User, st.text(), users),
    "int-point": CodecCase(int, Point, msgpack_ints, points),
    "bytes-list": CodecCase(bytes, list[int], st.binary(), st.lists(msgpack_ints)),
    "tuple-dict": CodecCase(
        tuple[int, str],
        dict[str, int],
        st.tuples(msgpack_ints, st.text()),
        st.dictionaries(st.text(), msgpack_ints),
    ),
    "uuid-datetime": CodecCase(uuid.UUID, datetime.datetime, st.uuids(), datetimes_with_zones),
    "datetime-decimal": CodecCase(
        datetime.datetime,
        Decimal,
        datetimes_with_zones,
        st.decimals(allow_nan=False, allow_infinity=False),
    ),
    "enum-union": CodecCase(
        Color, int | str | None, st.sampled_from(Color), st.none() | msgpack_ints | st.text()
    ),
    "point-dataclass": CodecCase(Point, Item, points, st.builds(Item, st.text(), msgpack_ints)),
    "frozenset-set": CodecCase(
        frozenset[int],
        set[str],
        st.frozensets(msgpack_ints, max_size=5),
        st.sets(st.text(), max_size=5),
        canonical=False,
    ),
    "str-float-tuple": CodecCase(
        str, tuple[float, bytes], st.text(), st.tuples(st.floats(allow_nan=False), st.binary())
    ),
}


@functools.cache
def codec_for(name: str) -> Codec[Any, Any]:
    """Return the codec of a case, built once (building type adapters is slow)."""
    case = CODEC_CASES[name]
    return Codec(case.key_type, case.value_type)


class TestCodecRoundTrips:
    """Keys and values decode to the validated value given, with stable bytes."""

    @pytest.mark.parametrize("name", CODEC_CASES)
    @given(data=st.data())
    def test_value_encoding_round_trips(self, name: str, data: st.DataObject) -> None:
        """A value's bytes decode to the validated value, which equals the value given."""
        codec = codec_for(name)
        value = data.draw(CODEC_CASES[name].values, label="value")
        validated, blob = codec.encode_value(value)
        assert validated == value
        assert codec.decode_value(blob) == validated

    @pytest.mark.parametrize("name", CODEC_CASES)
    @given(data=st.data())
    def test_value_encoding_is_idempotent(self, name: str, data: st.DataObject) -> None:
        """Encoding a decoded value again gives the same value and, where canonical, the same
        bytes."""
        codec = codec_for(name)
        _, blob = codec.encode_value(data.draw(CODEC_CASES[name].values, label="value"))
        decoded = codec.decode_value(blob)
        again, again_blob = codec.encode_value(decoded)
        assert again == decoded
        if CODEC_CASES[name].canonical:
            assert again_blob == blob

    @pytest.mark.parametrize("name", CODEC_CASES)
    @given(data=st.data())
    def test_key_encoding_round_trips(self, name: str, data: st.DataObject) -> None:
        """A key's bytes decode to the validated key, which equals and hashes like the key given."""
        codec = codec_for(name)
        key = data.draw(CODEC_CASES[name].keys, label="key")
        validated, blob = codec.encode_key(key)
        assert validated == key
        assert hash(validated) == hash(key)
        assert codec.validate_key(unpack(blob)) == validated
        assert codec.key_bytes(validated) == blob

    @given(items=st.lists(msgpack_ints, min_size=2, max_size=12, unique=True))
    def test_equal_set_keys_encode_to_equal_bytes(self, items: list[int]) -> None:
        """Equal frozenset keys built in different orders get the same bytes: their identity on
        disk."""
        codec = codec_for("frozenset-set")
        _, forward = codec.encode_key(frozenset(items))
        _, backward = codec.encode_key(frozenset(reversed(items)))
        assert forward == backward
        assert codec.key_bytes(frozenset(reversed(items))) == forward

    @pytest.mark.parametrize("name", CODEC_CASES)
    @given(data=st.data())
    def test_memory_form_thaws_to_the_value(self, name: str, data: st.DataObject) -> None:
        """What memory keeps for a value gives the value back, a new object if values are
        mutable."""
        codec = codec_for(name)
        validated, blob = codec.encode_value(data.draw(CODEC_CASES[name].values, label="value"))
        stored = codec.freeze(validated, blob)
        assert codec.thaw(stored) == validated
        assert codec.stored_bytes(stored) == blob or not CODEC_CASES[name].canonical
        if codec.copies_values:
            assert codec.thaw(stored) is not codec.thaw(stored)


class TestCodecErrors:
    """The codec raises its own errors, never msgpack's, and a failed pack leaves nothing behind."""

    @given(value=st.integers(2**64, 2**200) | st.integers(-(2**200), -(2**63) - 1))
    def test_int_beyond_msgpack_range_raises_encoding_error(self, value: int) -> None:
        """An int msgpack cannot hold raises EncodingError, not a msgpack exception."""
        codec = codec_for("str-int")
        with pytest.raises(EncodingError, match="cannot encode"):
            codec.encode_value(value)

    @given(blob=st.binary(min_size=1, max_size=60))
    def test_arbitrary_bytes_decode_or_raise_the_codec_errors(self, blob: bytes) -> None:
        """Decoding arbitrary bytes gives a User or raises RecordDecodeError or ValidationError."""
        try:
            decoded = codec_for("str-user").decode_value(blob)
        except (RecordDecodeError, pydantic.ValidationError):
            return
        assert isinstance(decoded, User)

    def test_packer_is_reused_correctly_after_a_failed_pack(self) -> None:
        """A value that fails to encode leaves nothing behind for the next value packed."""
        codec: Codec[str, dict[str, Any]] = Codec(str, dict[str, Any])
        with pytest.raises(EncodingError, match="msgpack"):
            codec.encode_value({"big": 2**70})
        value, blob = codec.encode_value({"a": [1, 2]})
        assert blob == msgpack.packb({"a": [1, 2]})
        assert codec.decode_value(blob) == value == {"a": [1, 2]}


class TestStrKeyFastDecode:
    """The fast decode of str keys gives and refuses what msgpack does."""

    @given(key=st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
    def test_str_key_fast_decode_matches_msgpack(self, key: str) -> None:
        """Decoding a str key's bytes gives what msgpack gives, short keys and long ones alike."""
        codec: Codec[str, User] = Codec(str, User)
        _, blob = codec.encode_key(key)
        assert codec.decode_key(blob) == unpack(blob) == key

    @pytest.mark.parametrize(
        "blob",
        [b"\xa2\xff\xfe", b"\xa3ab", b"\xa1ab", b"\xa0\x00"],
        ids=["bad-utf8", "cut-short", "trailing-byte", "empty-then-extra"],
    )
    def test_str_key_fast_decode_refuses_what_msgpack_refuses(self, blob: bytes) -> None:
        """Key bytes that are not exactly one msgpack str raise RecordDecodeError on either path."""
        with pytest.raises(RecordDecodeError, match=r"."):
            unpack(blob)
        with pytest.raises(RecordDecodeError, match=r"."):
            Codec(str, User).decode_key(blob)
