"""The container format: round trips, streaming, seeking, and every malformed input."""
import dataclasses
import io
import struct
import zlib

import pytest

from bitstream import (LIMITS, ColorFormat, ContainerReader, ContainerWriter, FormatError, Header,
                       StreamKind, UnitType, pack, unpack)
from tools.fuzz_container import fuzz

H = Header(StreamKind.IMAGE, 768, 512, model_id="image-small-v1", weights_digest=bytes(range(32)),
           quality=2.75, params={"slices": 4, "note": "x"})


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _chunk(ctype: bytes, payload: bytes, v1: bool = False) -> bytes:
    length = struct.pack("<I", len(payload)) if v1 else _varint(len(payload))
    return length + ctype + payload + struct.pack("<I", zlib.crc32(payload, zlib.crc32(ctype)))


def _unit(index: int, utype: int, crc: int) -> bytes:
    return _varint(index) + struct.pack("<BI", utype, crc)


def test_roundtrip_image():
    """A single image: HEAD and its one UNIT, nothing after (no INDX, no TAIL); the header
    keeps the first 8 bytes of the weights digest."""
    data = pack(H, [(UnitType.KEY, 0xDEADBEEF, b"payload")])
    h, units = unpack(data)
    assert h == dataclasses.replace(H, weights_digest=bytes(range(8)))
    assert h.digest_matches(bytes(range(32))) and not h.digest_matches(bytes(32))
    assert len(units) == 1 and units[0].payload == b"payload" and units[0].checksum == 0xDEADBEEF
    assert h.to_dict()["kind"] == "image" and h.to_dict()["weights_digest"] == bytes(range(8)).hex()
    assert b"INDX" not in data and b"TAIL" not in data and data.endswith(units[0].payload + data[-4:])
    r = ContainerReader(io.BytesIO(data))
    assert r.key_units() == [(0, data.index(b"UNIT") - 1)]
    r.seek(0)
    assert [u.payload for u in r] == [b"payload"]
    with pytest.raises(FormatError, match="trailing bytes"):
        unpack(data + b"\0")
    with pytest.raises(ValueError, match="key unit"):
        pack(H, [(UnitType.INTER, 0, b"")])


def test_container_cost_of_an_image():
    """What the container adds to a Kodak-size image's payload (FORMAT.md's example)."""
    h = Header(StreamKind.IMAGE, 768, 512, model_id="image_small", weights_digest=bytes(32),
               quality=3.5, params={"v": 1})
    assert len(pack(h, [(UnitType.KEY, 0, bytes(20000))])) - 20000 == 82  # version 1: 178


def test_reads_version_1():
    """Files of format 1.0 (fixed-size fields, the whole digest, INDX and TAIL after every
    file) still read."""
    head = (struct.pack("<BBBBHIIfIII", 2, 2, 8, 0, 1, 16, 16, 1.5, 25, 1, 2) + bytes([3]) + b"vid"
            + bytes(range(32)) + struct.pack("<H", 0))
    units = [_chunk(b"UNIT", struct.pack("<IBI", i, i, 7 + i) + bytes([i]) * 3, v1=True)
             for i in range(2)]
    sig = b"\x89NCZ\r\n\x1a\n\x01\x00"
    head_chunk = _chunk(b"HEAD", head, v1=True)
    first = len(sig) + len(head_chunk)
    index = _chunk(b"INDX", struct.pack("<IIQ", 1, 0, first), v1=True)
    index_pos = first + sum(map(len, units))
    tail = _chunk(b"TAIL", struct.pack("<IQ", 2, index_pos), v1=True)
    data = sig + head_chunk + b"".join(units) + index + tail
    r = ContainerReader(io.BytesIO(data))
    assert r.version == 1 and r.header.weights_digest == bytes(range(32))
    assert r.header.fps_num == 25 and r.header.frame_count == 2
    assert [(u.type, u.checksum, u.payload) for u in r] == [(UnitType.KEY, 7, bytes(3)),
                                                             (UnitType.INTER, 8, b"\1\1\1")]
    assert ContainerReader(io.BytesIO(data)).key_units() == [(0, first)]


def test_streaming_video_patches_count_and_seeks():
    h = Header(StreamKind.VIDEO, 320, 192, ColorFormat.YUV420, fps_num=12, frame_count=0,
               params={"intra_period": 4})
    buf = io.BytesIO()
    with ContainerWriter(buf, h) as w:
        for i in range(10):
            w.write_unit(UnitType.KEY if i % 4 == 0 else UnitType.INTER, i, bytes([i]) * i)
    data = buf.getvalue()
    h2, units = unpack(data)
    assert h2.frame_count == 10 and [u.index for u in units] == list(range(10))
    r = ContainerReader(io.BytesIO(data))
    assert [k for k, _ in r.key_units()] == [0, 4, 8]
    r.seek(4)
    assert [u.index for u in r] == [4, 5, 6, 7, 8, 9]
    with pytest.raises(FormatError, match="not a key unit"):
        ContainerReader(io.BytesIO(data)).seek(5)


def test_non_seekable_output_keeps_unknown_count():
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    p = Pipe()
    h = Header(StreamKind.VIDEO, 16, 16, frame_count=0)
    with ContainerWriter(p, h) as w:
        w.write_unit(UnitType.KEY, 0, b"")
        w.write_unit(UnitType.INTER, 0, b"")
    h2, units = unpack(bytes(p.buf))
    assert h2.frame_count == 0 and len(units) == 2


def test_writer_refuses_wrong_unit_count():
    with pytest.raises(ValueError):
        pack(Header(StreamKind.VIDEO, 16, 16, frame_count=2), [(UnitType.KEY, 0, b"")])


def test_every_truncation_is_a_format_error():
    data = pack(Header(StreamKind.VIDEO, 8, 8, frame_count=2),
                [(UnitType.KEY, 1, b"abc"), (UnitType.INTER, 2, b"defg")])
    for n in range(len(data)):
        with pytest.raises(FormatError):
            unpack(data[:n])
    with pytest.raises(FormatError, match="trailing"):
        unpack(data + b"\0")


def test_every_bit_flip_is_detected():
    data = pack(H, [(UnitType.KEY, 7, b"some payload bytes")])
    for i in range(len(data)):
        if i == 9:
            continue  # the minor version: any minor of a known major is accepted
        for bit in (0, 5):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(FormatError):
                unpack(bytes(bad))


@pytest.mark.parametrize("field,value,msg", [
    ("width", 0, "dimensions"), ("height", 70000, "dimensions"), ("bit_depth", 17, "bit depth"),
    ("frame_count", LIMITS["max_frames"] + 1, "frame count"), ("fps_den", 0, "denominator"),
    ("quality", float("nan"), "quality")])
def test_header_limits(field, value, msg):
    bad = dataclasses.replace(H, **{field: value})
    with pytest.raises(FormatError, match=msg):
        bad.validate()


def test_pixel_limit_and_odd_yuv():
    with pytest.raises(FormatError, match="pixels"):
        Header(StreamKind.IMAGE, 65535, 65535).validate()
    with pytest.raises(FormatError, match="even"):
        Header(StreamKind.VIDEO, 17, 16, ColorFormat.YUV420).validate()


def _file(*chunks: bytes) -> bytes:
    return b"\x89NCZ\r\n\x1a\n\x02\x00" + b"".join(chunks)


def _head_payload() -> bytes:
    data = pack(dataclasses.replace(H, frame_count=0), [])
    length = data[10]  # one varint byte: the payload is under 128 bytes
    return data[15:15 + length]


def test_structural_errors_have_clear_messages():
    head = _chunk(b"HEAD", _head_payload())
    tail = _chunk(b"TAIL", struct.pack("<IQ", 0, 0))
    unpack(_file(head, tail))  # minimal valid file: no units, no index
    cases = [
        (b"GIF89a" + bytes(20), "signature"),
        (_file(head, tail).replace(b"\x02\x00", b"\x03\x00", 1), "version 3.0"),
        (_file(_chunk(b"UNIT", bytes(9)), tail), "expected HEAD"),
        (_file(head, _chunk(b"WHAT", b""), tail), "unknown critical chunk"),
        (_file(head, _chunk(b"UNIT", _unit(1, 0, 0)), tail), "unit 1 found"),
        (_file(head, _chunk(b"UNIT", _unit(0, 9, 0)), tail), "unknown type"),
        (_file(head, _chunk(b"UNIT", b"\0"), tail), "too short"),
        (_file(head, _chunk(b"TAIL", struct.pack("<IQ", 3, 0))), "TAIL says 3"),
        (_file(head, _varint(2**31) + b"UNIT"), "exceeds the limit"),
        (_file(head, _varint(2**29) + b"UNIT" + b"x" * 100), "truncated inside"),
        (_file(head, b"\x80\x80\x80\x80\x80\x01UNIT"), "too long"),
        (_file(head, b"\x80\x00UNIT"), "bad number"),
        (_file(head, _chunk(b"INDX", b"\1\0\0\0"), tail), "INDX"),
    ]
    for data, msg in cases:
        with pytest.raises(FormatError, match=msg):
            unpack(data)


def test_ancillary_chunks_are_skipped():
    head = _chunk(b"HEAD", _head_payload())
    data = _file(head, _chunk(b"note", b"anything"), _chunk(b"TAIL", struct.pack("<IQ", 0, 0)))
    assert unpack(data)[1] == []


def test_bad_params_and_flags():
    p = bytearray(_head_payload())
    p[3] = 0x80  # flags
    with pytest.raises(FormatError, match="flags"):
        unpack(_file(_chunk(b"HEAD", bytes(p))))
    p = bytearray(_head_payload())
    end = len(p)
    with pytest.raises(FormatError, match="HEAD"):
        unpack(_file(_chunk(b"HEAD", bytes(p[:end - 3]))))
    # the writer refuses what the reader would refuse
    with pytest.raises(ValueError, match="scalars"):
        pack(dataclasses.replace(H, params={"x": [1, 2.5]}), [(UnitType.KEY, 0, b"")])


def test_fuzz_small_run():
    res = fuzz(3000, seed=1)
    assert res["failures"] == []
    assert res["outcomes"]["FormatError"] > 2500
