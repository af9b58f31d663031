"""The message encoding that both transports use: arrays round-trip exactly, and any
malformed array extension is one FormatError."""

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


def _with_ext(data: bytes) -> bytes:
    return msgpack.packb([2, "a", "b", "s", {"x": msgpack.ExtType(1, data)}], use_bin_type=True)


def _head(dtype, shape, pad=b""):
    head = msgpack.packb([dtype, shape, pad], use_bin_type=True)
    return bytes([len(head)]) + head


@pytest.mark.parametrize("data, message", [
    (b"", "truncated"),
    (bytes([200]) + b"xx", "truncated"),
    (_head("<u8", [3]) + bytes(16), "does not match"),
    (_head("<u8", [3]) + bytes(25), "does not match"),
    (_head("|O", [1]) + bytes(8), "not allowed"),
    (_head("<u8", [-1]) + bytes(8), "shape"),
    (_head("<u8", "3") + bytes(24), "shape"),
])
def test_malformed_array_extensions_are_format_errors(data, message):
    with pytest.raises(FormatError, match=message):
        decode_message(_with_ext(data))
