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


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack("<I4s", len(payload), ctype) + payload + struct.pack(
        "<I", zlib.crc32(payload, zlib.crc32(ctype)))


def test_roundtrip_image():
    data = pack(H, [(UnitType.KEY, 0xDEADBEEF, b"payload")])
    h, units = unpack(data)
    assert h == H
    assert len(units) == 1 and units[0].payload == b"payload" and units[0].checksum == 0xDEADBEEF
    assert h.to_dict()["kind"] == "image" and h.to_dict()["weights_digest"] == bytes(range(32)).hex()


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
            continue  # the minor version: any minor of major 1 is accepted
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
    return b"\x89NCZ\r\n\x1a\n\x01\x00" + b"".join(chunks)


def _head_payload() -> bytes:
    data = pack(dataclasses.replace(H, frame_count=0), [])
    length, = struct.unpack_from("<I", data, 10)
    return data[18:18 + length]


def test_structural_errors_have_clear_messages():
    head = _chunk(b"HEAD", _head_payload())
    tail = _chunk(b"TAIL", struct.pack("<IQ", 0, 0))
    unpack(_file(head, tail))  # minimal valid file: no units, no index
    cases = [
        (b"GIF89a" + bytes(20), "signature"),
        (_file(head, tail).replace(b"\x01\x00", b"\x02\x00", 1), "version 2.0"),
        (_file(_chunk(b"UNIT", bytes(9)), tail), "expected HEAD"),
        (_file(head, _chunk(b"WHAT", b""), tail), "unknown critical chunk"),
        (_file(head, _chunk(b"UNIT", struct.pack("<IBI", 1, 0, 0)), tail), "unit 1 found"),
        (_file(head, _chunk(b"UNIT", struct.pack("<IBI", 0, 9, 0)), tail), "unknown type"),
        (_file(head, _chunk(b"UNIT", b"\0"), tail), "too short"),
        (_file(head, _chunk(b"TAIL", struct.pack("<IQ", 3, 0))), "TAIL says 3"),
        (_file(head, struct.pack("<I4s", 2**31, b"UNIT")), "exceeds the limit"),
        (_file(head, struct.pack("<I4s", 2**29, b"UNIT") + b"x" * 100), "truncated inside"),
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
    p[3] = 1  # flags
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
