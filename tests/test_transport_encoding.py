"""The message encoding that both transports use: arrays round-trip exactly, and any
malformed array extension is one FormatError."""

import struct

import msgpack
import numpy as np
import pytest

from ppxgb.errors import FormatError
from ppxgb.transport import decode_message, encode_message

ARRAYS = [np.arange(5, dtype=np.uint64), np.zeros((0, 3), np.float32), np.ones((2, 3), bool),
          np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::2], np.array(7, dtype=np.int64),
          np.random.default_rng(0).normal(size=(4, 5, 2)), np.arange(-3, 3, dtype=np.int32)]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_arrays_round_trip_with_dtype_and_shape(arr):
    got = decode_message(encode_message("a", "b", "stage", {"x": arr, "n": 3})).payload
    assert got["n"] == 3 and got["x"].dtype == arr.dtype and got["x"].shape == arr.shape
    np.testing.assert_array_equal(got["x"], arr)
    assert got["x"].ctypes.data % 8 == 0          # the data is wrapped 8-byte aligned


def _with_ext(ext: bytes, area: bytes = bytes(64)) -> bytes:
    head = msgpack.packb([3, "a", "b", "s", {"x": msgpack.ExtType(1, ext)}], use_bin_type=True)
    return struct.pack("<I", len(head)) + head + bytes(-(4 + len(head)) % 8) + area


def _head(dtype, shape, offset=0):
    return msgpack.packb([dtype, shape, offset], use_bin_type=True)


@pytest.mark.parametrize("ext, message", [
    (b"", "malformed"),
    (b"\x93\xa3<u8", "malformed"),
    (_head("<u8", [9]), "outside"),
    (_head("<u8", [3], 48), "outside"),
    (_head("<u8", [3], 4), "outside"),
    (_head("<u8", [3], -8), "outside"),
    (_head("|O", [1]), "not allowed"),
    (_head("<u8", [-1]), "shape"),
    (_head("<u8", "3"), "shape"),
    (_head(3, [3]), "not allowed"),
    (_head("<u8", [2**62, 4]), "outside"),
])
def test_malformed_array_extensions_are_format_errors(ext, message):
    with pytest.raises(FormatError, match=message):
        decode_message(_with_ext(ext))


def test_a_well_formed_frame_decodes_and_truncated_frames_do_not():
    arr = np.arange(8, dtype=np.uint64)
    got = decode_message(_with_ext(_head("<u8", [8]), arr.tobytes())).payload["x"]
    np.testing.assert_array_equal(got, arr)
    data = encode_message("a", "b", "stage", {"x": arr})
    for cut in (0, 3, 10, len(data) - 1):
        with pytest.raises(FormatError):
            decode_message(data[:cut])


def test_array_data_is_copied_once_into_the_message():
    arr = np.arange(1000, dtype=np.uint64)
    data = encode_message("a", "b", "stage", {"x": arr, "y": [arr[:3], arr]})
    assert len(data) < 2 * arr.nbytes + 3 * 8 + 100          # raw bytes, no per-array re-encoding
    got = decode_message(data).payload
    assert not got["x"].flags.writeable and got["x"].base is not None   # a view of the message


def test_a_drafted_message_is_the_encoded_message_byte_for_byte():
    from ppxgb.transport import Blank, InMemoryTransport, draft_message
    a = np.arange(7, dtype=np.uint32)
    b = np.arange(12, dtype=np.uint64).reshape(6, 2) * 3
    draft = draft_message("a", "b", "corr", {"f": 2, "a": a, "b": Blank((6, 2), np.uint64), "tail": "x"})
    assert set(draft.arrays) == {"b"} and draft.arrays["b"].shape == (6, 2)
    draft.arrays["b"][:] = b
    assert draft.data.tobytes() == encode_message("a", "b", "corr", {"f": 2, "a": a, "b": b, "tail": "x"})
    t = InMemoryTransport()
    t.send_draft(draft)
    got = t.recv("b", "corr")
    np.testing.assert_array_equal(got.payload["b"], b)
    np.testing.assert_array_equal(got.payload["a"], a)
    assert got.size == draft.data.size == t.total_bytes
    with pytest.raises(TypeError):
        encode_message("a", "b", "s", {"b": Blank((2,), np.uint8)})
    with pytest.raises(TypeError):
        draft_message("a", "b", "s", {"nested": [Blank((2,), np.uint8)]})
