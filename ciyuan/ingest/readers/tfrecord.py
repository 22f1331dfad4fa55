"""TFRecord files and ``tf.train.Example`` / ``SequenceExample`` messages, read without TensorFlow.

A TFRecord file is a run of records, each ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` (little endian). :func:`records` yields every record with its number
and a problem string when a checksum does not hold (a bad length checksum or a short record ends the
file: the framing after it cannot be trusted). :func:`parse_example` decodes the protobuf wire
format of the two Example messages into ``{key: list}`` (bytes, float or int values), which is all
the RLDS reader needs; unknown fields are skipped as the wire format allows.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

_POLY = 0x82F63B78  # Castagnoli, reflected


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        out.append(c)
    return out


_T = _table()


_TN = np.array(_T, dtype=np.uint32)
_X = np.arange(1 << 16, dtype=np.uint32)
_T16 = _TN[(_TN[_X & 0xFF] ^ (_X >> 8)) & 0xFF] ^ (_TN[_X & 0xFF] >> 8)  # two bytes a lookup
del _X
_VECTOR_MIN = 4096  # below this a byte loop is as fast as setting up the lanes


def _raw(c: int, data: bytes | memoryview) -> int:
    t = _T
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c


@functools.lru_cache(maxsize=16)
def _shift_tables(m: int) -> tuple[list[int], ...]:
    """The CRC state after ``m`` zero bytes, as four byte tables (the shift is linear over GF(2))."""
    s = np.array([b << (8 * k) for k in range(4) for b in range(256)], dtype=np.uint32)
    for _ in range(m):
        s = _TN[s & 0xFF] ^ (s >> 8)
    return tuple(s.reshape(4, 256).tolist())


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecord framing uses it.

    A pure-Python byte loop runs at about a megabyte a second, too slow for camera-heavy shards, so
    large inputs are cut into equal lanes whose CRCs numpy computes side by side (one lookup in a
    16-bit table per two byte positions, for all lanes), then folded in order:
    ``crc(s, A + B) = shift_len(B)(crc(s, A)) ^ crc(0, B)``, the shift applied with four byte tables.
    """
    n = len(data)
    if n < _VECTOR_MIN:
        return _raw(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    m = 1 << max(8, min(13, (int(n ** 0.5)).bit_length() - 1))  # lane length, a power of two
    lanes = n // m
    block = np.frombuffer(data, dtype="<u2", count=lanes * m // 2).reshape(lanes, m // 2).T.copy()
    s = np.zeros(lanes, dtype=np.uint32)
    for row in block:
        s = _T16[(s ^ row) & 0xFFFF] ^ (s >> 16)
    t0, t1, t2, t3 = _shift_tables(m)
    c = 0xFFFFFFFF
    for r in s.tolist():
        c = t0[c & 0xFF] ^ t1[(c >> 8) & 0xFF] ^ t2[(c >> 16) & 0xFF] ^ t3[c >> 24] ^ r
    return _raw(c, memoryview(data)[lanes * m:]) ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant (mod 2**32)."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(f: BinaryIO) -> Iterator[tuple[int, bytes, str | None]]:
    """``(record_number, data, problem)`` for every record of an open TFRecord file (numbers from 0)."""
    n = 0
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            yield n, head, f"record {n}: truncated header ({len(head)} of 12 bytes)"
            return
        length, want = struct.unpack("<QI", head)
        if masked_crc(head[:8]) != want:
            yield n, head, f"record {n}: length checksum does not match (masked crc32c {want:#010x})"
            return
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            yield n, data, f"record {n}: truncated ({len(data)} of {length} bytes)"
            return
        (want,) = struct.unpack("<I", tail)
        got = masked_crc(data)
        yield n, data, None if got == want else (f"record {n}: data checksum does not match (masked crc32c "
                                                 f"{got:#010x}, the file says {want:#010x})")
        n += 1


class WireError(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("varint runs past the end")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")


def fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """``(field_number, wire_type, value)`` of a message: ints for varint/fixed, bytes for length-delimited."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > end:
                raise WireError("fixed64 runs past the end")
            v = buf[pos:pos + 8]
            pos += 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > end:
                raise WireError(f"field {num}: {ln} bytes run past the end")
            v = buf[pos:pos + ln]
            pos += ln
        elif wt == 5:
            if pos + 4 > end:
                raise WireError("fixed32 runs past the end")
            v = buf[pos:pos + 4]
            pos += 4
        else:
            raise WireError(f"field {num}: wire type {wt} is not used by Example messages")
        yield num, wt, v


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes) -> tuple[str, list]:
    """One ``Feature``: ``("bytes"|"float"|"int64", values)`` (an empty Feature is ``("none", [])``)."""
    for num, wt, v in fields(buf):
        if wt != 2:
            continue
        if num == 1:
            return "bytes", [bytes(x) for n, w, x in fields(v) if n == 1 and w == 2]
        if num == 2:
            out: list = []
            for n, w, x in fields(v):
                if n != 1:
                    continue
                if w == 2:  # packed
                    if len(x) % 4:
                        raise WireError("packed float list is not a multiple of 4 bytes")
                    out += struct.unpack(f"<{len(x) // 4}f", x)
                elif w == 5:
                    out.append(struct.unpack("<f", x)[0])
            return "float", out
        if num == 3:
            out = []
            for n, w, x in fields(v):
                if n != 1:
                    continue
                if w == 2:
                    p = 0
                    while p < len(x):
                        val, p = _varint(x, p)
                        out.append(_signed(val))
                elif w == 0:
                    out.append(_signed(x))
            return "int64", out
    return "none", []


def _map_entries(buf: bytes) -> Iterator[tuple[str, bytes]]:
    """The ``map<string, Message>`` entries (field 1) of ``Features`` / ``FeatureLists``."""
    for num, wt, entry in fields(buf):
        if num != 1 or wt != 2:
            continue
        key, value = "", b""
        for n, w, x in fields(entry):
            if n == 1 and w == 2:
                key = bytes(x).decode("utf-8", "replace")
            elif n == 2 and w == 2:
                value = x
        yield key, value


def parse_example(buf: bytes) -> tuple[dict[str, tuple[str, list]], bool]:
    """The features of an ``Example`` (or a ``SequenceExample``: its context, and each feature list
    with its steps' values concatenated), ``{key: (kind, values)}``, and whether it was a sequence."""
    out: dict[str, tuple[str, list]] = {}
    sequence = False
    for num, wt, v in fields(buf):
        if wt != 2:
            continue
        if num == 1:  # Example.features / SequenceExample.context
            for key, value in _map_entries(v):
                out[key] = _feature(value)
        elif num == 2:  # SequenceExample.feature_lists
            sequence = True
            for key, flist in _map_entries(v):
                kind, values = "none", []
                for n, w, x in fields(flist):
                    if n == 1 and w == 2:
                        k, vals = _feature(x)
                        kind = k if k != "none" else kind
                        values += vals
                out[key] = (kind, values)
    return out, sequence
