"""Reader and writer of the ncodec container (``.ncz``); the byte-level spec is FORMAT.md.

A file is a signature, a version, then typed chunks ``length | type | payload | crc32``:
``HEAD`` (once, first), ``UNIT`` (one per coded image or frame), ``INDX`` (key units and
their offsets, for seeking) and ``TAIL`` (last; unit count and where ``INDX`` is). A file
whose header announces exactly one unit ends after it (no ``INDX``, no ``TAIL``: a single
image costs about 80 bytes of container). Every reader check raises :class:`FormatError`;
limits are checked before anything is allocated. The writer writes version 2; the reader
also reads version 1 files (fixed-size fields, full weights digest, always INDX and TAIL).
"""
from __future__ import annotations

import dataclasses
import enum
import io
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import IO, Iterator

from .errors import FormatError

__all__ = [
    "SIGNATURE", "VERSION", "CODER_VERSION", "StreamKind", "ColorFormat", "UnitType", "Header",
    "Unit", "ContainerWriter", "ContainerReader", "pack", "unpack", "LIMITS",
]

SIGNATURE = b"\x89NCZ\r\n\x1a\n"
VERSION = (2, 0)  #: (major, minor) written; readers accept any minor of a major they know
READ_MAJORS = (1, 2)  #: the majors this reader knows
DIGEST_BYTES = 8  #: the weights digest's prefix that version 2 stores (version 1: all 32)
CODER_VERSION = 1  #: version of the rANS stream layout (bitstream.rans)


class StreamKind(enum.IntEnum):
    """What a file holds; it picks the decoder (``Header.kind``)."""

    IMAGE = 1
    VIDEO = 2
    LOSSLESS = 3


class ColorFormat(enum.IntEnum):
    """Sample layout of the coded pictures (``Header.color_format``)."""

    GRAY = 0
    RGB = 1
    YUV420 = 2
    RGBA = 3


class UnitType(enum.IntEnum):
    """Whether a unit decodes on its own."""

    KEY = 0  #: decodable on its own (image, intra frame): listed in the index
    INTER = 1  #: needs the units before it


LIMITS = {
    "max_dimension": 65535,
    "max_pixels": 1 << 28,
    "max_chunk_bytes": 1 << 30,
    "max_frames": 1 << 24,
    "max_params_bytes": 4096,
    "max_model_id": 64,
}

_CHUNK_HEAD = struct.Struct("<I4s")
_CRC = struct.Struct("<I")
_HEAD_V1 = struct.Struct("<BBBBHIIfIII")  # kind colour depth flags coder w h q fps_n fps_d frames
_HEAD_V2 = struct.Struct("<BBBBHHHfI")  # kind colour depth flags coder w h q frames
_HAS_RATE = 1  #: version 2 HEAD flag: a frame rate (u32 numerator, u32 denominator) follows
_SINGLE = 2  #: version 2 HEAD flag: one key unit, and the file ends after it (no INDX, no TAIL)
_UNIT_V1 = struct.Struct("<IBI")  # index, type, symbol checksum (version 2: varint index)
_TYPE_CRC = struct.Struct("<BI")
_TAIL = struct.Struct("<IQ")  # unit count, INDX offset (0: none)
_INDEX_ENTRY = struct.Struct("<IQ")
_READ_PIECE = 1 << 20


def _varint(n: int) -> bytes:
    """LEB128: 7 bits a byte, least significant first, high bit set on all but the last."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(p: bytes, o: int, what: str, limit: int = 1 << 32) -> tuple[int, int]:
    """``(value, offset after it)`` of the varint at ``p[o:]``: at most 5 bytes, minimal
    (no trailing zero byte), at most ``limit``."""
    n = shift = 0
    for i in range(5):
        if o + i >= len(p):
            raise FormatError(f"{what}: truncated number")
        b = p[o + i]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if (b == 0 and i) or n > limit:
                raise FormatError(f"{what}: bad number")
            return n, o + i + 1
    raise FormatError(f"{what}: number too long")


@dataclass(frozen=True)
class Header:
    """What a decoder needs before the first unit. ``frame_count`` 0 means not yet known
    (a stream still being written); ``params`` holds codec-specific scalars (JSON object).
    ``weights_digest`` is the SHA-256 of the encoder's weights (32 bytes) when written; a
    version 2 file keeps its first :data:`DIGEST_BYTES`, which is what its reader returns:
    compare with :meth:`digest_matches`."""

    kind: StreamKind
    width: int
    height: int
    color_format: ColorFormat = ColorFormat.RGB
    bit_depth: int = 8
    model_id: str = ""
    weights_digest: bytes = bytes(32)
    coder_version: int = CODER_VERSION
    quality: float = 0.0
    fps_num: int = 0
    fps_den: int = 1
    frame_count: int = 1
    params: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`FormatError` if any field is out of range."""
        lim = LIMITS
        try:
            StreamKind(self.kind)
            ColorFormat(self.color_format)
        except ValueError as e:
            raise FormatError(f"header: {e}") from None
        if not (1 <= self.width <= lim["max_dimension"] and 1 <= self.height <= lim["max_dimension"]):
            raise FormatError(f"header: dimensions {self.width}x{self.height} out of range "
                              f"1..{lim['max_dimension']}")
        if self.width * self.height > lim["max_pixels"]:
            raise FormatError(f"header: {self.width}x{self.height} exceeds {lim['max_pixels']} pixels")
        if not 1 <= self.bit_depth <= 16:
            raise FormatError(f"header: bit depth {self.bit_depth} out of range 1..16")
        if not 0 <= self.frame_count <= lim["max_frames"]:
            raise FormatError(f"header: frame count {self.frame_count} exceeds {lim['max_frames']}")
        if self.fps_den == 0 or not math.isfinite(self.quality):
            raise FormatError("header: frame rate denominator is 0 or quality is not finite")
        if len(self.weights_digest) not in (DIGEST_BYTES, 32):
            raise FormatError(f"header: weights digest must be 32 (or {DIGEST_BYTES}) bytes")
        if self.color_format == ColorFormat.YUV420 and (self.width % 2 or self.height % 2):
            raise FormatError("header: YUV 4:2:0 needs even dimensions")

    def digest_matches(self, digest: bytes) -> bool:
        """Whether the full SHA-256 ``digest`` of some weights is the one this header names."""
        return len(digest) == 32 and digest[:len(self.weights_digest)] == self.weights_digest

    def to_dict(self) -> dict:
        """JSON-friendly view (for ``ncodec info --json``)."""
        return {
            "kind": StreamKind(self.kind).name.lower(),
            "width": self.width, "height": self.height,
            "color_format": ColorFormat(self.color_format).name.lower(),
            "bit_depth": self.bit_depth, "model_id": self.model_id,
            "weights_digest": self.weights_digest.hex(), "coder_version": self.coder_version,
            "quality": self.quality, "frame_rate": [self.fps_num, self.fps_den],
            "frame_count": self.frame_count, "params": self.params,
        }


@dataclass(frozen=True)
class Unit:
    """One coded unit: an image or a frame. ``checksum`` is the CRC32 of its decoded symbols."""

    index: int
    type: UnitType
    checksum: int
    payload: bytes


def _encode_header(h: Header, single: bool = False) -> bytes:
    """The version 2 HEAD payload (``single``: a one-unit file, see :data:`_SINGLE`)."""
    h.validate()
    mid = h.model_id.encode("ascii")
    params = json.dumps(h.params, sort_keys=True, separators=(",", ":")).encode() if h.params else b""
    if len(mid) > LIMITS["max_model_id"] or len(params) > LIMITS["max_params_bytes"]:
        raise ValueError("model id or params too long")
    if not all(isinstance(v, (int, float, str, bool)) for v in h.params.values()):
        raise ValueError("header params must be scalars (int, float, str, bool)")
    rate = (h.fps_num, h.fps_den) != (0, 1)
    flags = (_HAS_RATE if rate else 0) | (_SINGLE if single else 0)
    out = _HEAD_V2.pack(h.kind, h.color_format, h.bit_depth, flags,
                        h.coder_version, h.width, h.height, h.quality, h.frame_count)
    if rate:
        out += struct.pack("<II", h.fps_num, h.fps_den)
    return (out + bytes([len(mid)]) + mid + h.weights_digest[:DIGEST_BYTES]
            + _varint(len(params)) + params)


def _decode_header(p: bytes, major: int) -> tuple[Header, bool]:
    """The header and whether the file is a single-unit one (version 2 flag)."""
    try:
        if major == 1:
            (kind, colour, depth, flags, coder, w, h, q, fn, fd, frames) = _HEAD_V1.unpack_from(p)
            o, known, dlen = _HEAD_V1.size, 0, 32
        else:
            (kind, colour, depth, flags, coder, w, h, q, frames) = _HEAD_V2.unpack_from(p)
            o = _HEAD_V2.size
            fn, fd = struct.unpack_from("<II", p, o) if flags & _HAS_RATE else (0, 1)
            o, known, dlen = o + (8 if flags & _HAS_RATE else 0), _HAS_RATE | _SINGLE, DIGEST_BYTES
        n = p[o]
        mid = p[o + 1:o + 1 + n].decode("ascii")
        o += 1 + n
        digest = p[o:o + dlen]
        if major == 1:
            (plen,), o = struct.unpack_from("<H", p, o + dlen), o + dlen + 2
        else:
            plen, o = _read_varint(p, o + dlen, "HEAD params length", LIMITS["max_params_bytes"])
        raw = p[o:o + plen]
        if len(digest) != dlen or len(raw) != plen or o + plen != len(p):
            raise FormatError("HEAD chunk has the wrong length")
        params = json.loads(raw) if plen else {}
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"HEAD chunk is malformed ({type(e).__name__})") from None
    if flags & ~known:
        raise FormatError(f"HEAD has unknown flags {flags:#x}")
    if coder != CODER_VERSION:
        raise FormatError(f"entropy coder version {coder} is not supported (this is {CODER_VERSION})")
    if not isinstance(params, dict) or not all(
            isinstance(v, (int, float, str, bool)) for v in params.values()):
        raise FormatError("HEAD params must be a JSON object of scalars")
    try:
        hdr = Header(StreamKind(kind), w, h, ColorFormat(colour), depth, mid, bytes(digest), coder,
                     q, fn, fd, frames, params)
    except ValueError:
        raise FormatError(f"HEAD has an unknown stream kind {kind} or colour format {colour}") from None
    hdr.validate()
    single = bool(flags & _SINGLE)
    if single and frames != 1:
        raise FormatError(f"HEAD says single unit but announces {frames}")
    return hdr, single


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    """A version 2 chunk."""
    if len(payload) > LIMITS["max_chunk_bytes"]:
        raise ValueError(f"chunk of {len(payload)} bytes exceeds the format limit")
    return _varint(len(payload)) + ctype + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(ctype)))


#: bytes of a version 2 TAIL chunk (a 12-byte payload: a 1-byte length), of a version 1 one
_TAIL_CHUNK_BYTES = {2: len(_chunk(b"TAIL", bytes(_TAIL.size))),
                     1: _CHUNK_HEAD.size + _TAIL.size + _CRC.size}


class ContainerWriter:
    """Writes a container to a binary file object, unit by unit (streaming).

    ``close()`` (or leaving the ``with`` block) writes the index and the tail (none when the
    header announces one unit: that file ends with it); on a seekable output a header
    written with ``frame_count=0`` gets the final count patched in.
    """

    def __init__(self, f: IO[bytes], header: Header) -> None:
        self._f = f
        self._header = header
        self._count = 0
        self._keys: list[tuple[int, int]] = []
        self._pos = 0
        self._head_pos = len(SIGNATURE) + 2
        self._write(SIGNATURE + bytes(VERSION))
        self._write(_chunk(b"HEAD", _encode_header(header, single=header.frame_count == 1)))

    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._pos += len(b)

    def write_unit(self, unit_type: UnitType, checksum: int, payload: bytes) -> int:
        """Append a unit; returns its index."""
        if self._count >= LIMITS["max_frames"]:
            raise ValueError("too many units")
        if self._header.frame_count and self._count >= self._header.frame_count:
            raise ValueError(f"header announced {self._header.frame_count} units")
        if self._header.frame_count == 1 and unit_type != UnitType.KEY:
            raise ValueError("the one unit of a single-unit file must be a key unit")
        if unit_type == UnitType.KEY:
            self._keys.append((self._count, self._pos))
        unit = _varint(self._count) + _TYPE_CRC.pack(unit_type, checksum) + payload
        self._write(_chunk(b"UNIT", unit))
        self._count += 1
        return self._count - 1

    def close(self) -> None:
        """Write the index and the tail (and patch the frame count in, see the class)."""
        h = self._header
        if h.frame_count and self._count != h.frame_count:
            raise ValueError(f"header announced {h.frame_count} units, {self._count} written")
        if h.frame_count == 1:
            return
        index_pos = self._pos
        entries = b"".join(_INDEX_ENTRY.pack(i, off) for i, off in self._keys)
        self._write(_chunk(b"INDX", struct.pack("<I", len(self._keys)) + entries))
        self._write(_chunk(b"TAIL", _TAIL.pack(self._count, index_pos)))
        if h.frame_count == 0 and self._f.seekable():
            end = self._f.tell()
            self._f.seek(end - self._pos + self._head_pos)
            patched = dataclasses.replace(h, frame_count=self._count)
            self._f.write(_chunk(b"HEAD", _encode_header(patched)))  # the same length
            self._f.seek(end)

    def __enter__(self) -> "ContainerWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    """Read exactly n bytes in bounded pieces (a lying length cannot make us allocate it)."""
    parts, left = [], n
    while left:
        b = f.read(min(left, _READ_PIECE))
        if not b:
            raise FormatError(f"file is truncated inside {what}")
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


class ContainerReader:
    """Reads a container from ``bytes`` or a binary file object.

    ``header`` is parsed at construction; iterating yields the units in order with every
    CRC, index and count checked, ending with the tail. ``key_units()`` and ``seek(i)`` use
    the index on seekable inputs.
    """

    def __init__(self, src: bytes | IO[bytes]) -> None:
        self._f = io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src
        sig = self._f.read(len(SIGNATURE))
        if sig != SIGNATURE:
            raise FormatError("not an ncodec file (bad signature)")
        ver = _read_exact(self._f, 2, "the version")
        if ver[0] not in READ_MAJORS:
            raise FormatError(f"unsupported format version {ver[0]}.{ver[1]} "
                              f"(this reader knows {', '.join(f'{m}.x' for m in READ_MAJORS)})")
        self.version = ver[0]
        ctype, payload = self._chunk()
        if ctype != b"HEAD":
            raise FormatError(f"first chunk is {ctype!r}, expected HEAD")
        self.header, self._single = _decode_header(payload, self.version)
        self._first_unit = self._f.tell() if self._f.seekable() else -1
        self._next = 0
        self._index_pos = 0

    def _length(self) -> int | None:
        """The next chunk's length field (None at the end of the input)."""
        if self.version == 1:
            raw = self._f.read(4)
            if not raw:
                return None
            if len(raw) != 4:
                raise FormatError("file is truncated (missing chunk or TAIL)")
            return struct.unpack("<I", raw)[0]
        raw = b""
        while True:
            b = self._f.read(1)
            if not b:
                if not raw:
                    return None
                raise FormatError("file is truncated inside a chunk length")
            raw += b
            if not b[0] & 0x80 or len(raw) == 5:
                return _read_varint(raw, 0, "chunk length")[0]

    def _chunk(self) -> tuple[bytes, bytes]:
        self._chunk_pos = self._f.tell() if self._f.seekable() else -1
        length = self._length()
        if length is None:
            raise FormatError("file is truncated (missing chunk or TAIL)")
        ctype = _read_exact(self._f, 4, "a chunk type")
        if length > LIMITS["max_chunk_bytes"]:
            raise FormatError(f"chunk length {length} exceeds the limit {LIMITS['max_chunk_bytes']}")
        name = ctype.decode("latin-1")
        payload = _read_exact(self._f, length, f"chunk {name!r}")
        (crc,) = _CRC.unpack(_read_exact(self._f, _CRC.size, f"the CRC of chunk {name!r}"))
        if crc != zlib.crc32(payload, zlib.crc32(ctype)):
            raise FormatError(f"CRC mismatch in chunk {name!r}: the file is corrupt")
        return ctype, payload

    def _unit(self, p: bytes) -> Unit:
        if self.version == 1:
            if len(p) < _UNIT_V1.size:
                raise FormatError("UNIT chunk is too short")
            idx, utype, crc = _UNIT_V1.unpack_from(p)
            o = _UNIT_V1.size
        else:
            idx, o = _read_varint(p, 0, "UNIT index")
            if len(p) < o + _TYPE_CRC.size:
                raise FormatError("UNIT chunk is too short")
            utype, crc = _TYPE_CRC.unpack_from(p, o)
            o += _TYPE_CRC.size
        if idx != self._next:
            raise FormatError(f"unit {idx} found where unit {self._next} was expected")
        if utype not in UnitType._value2member_map_:
            raise FormatError(f"unit {idx} has an unknown type {utype}")
        if self.header.frame_count and idx >= self.header.frame_count:
            raise FormatError(f"more units than the {self.header.frame_count} announced")
        if self._single and utype != UnitType.KEY:
            raise FormatError("the unit of a single-unit file is not a key unit")
        self._next += 1
        return Unit(idx, UnitType(utype), crc, p[o:])

    def __iter__(self) -> Iterator[Unit]:
        while True:
            if self._single and self._next == 1:  # a single-unit file ends after its unit
                if self._f.read(1):
                    raise FormatError("trailing bytes after the unit of a single-unit file")
                return
            ctype, p = self._chunk()
            if ctype == b"UNIT":
                yield self._unit(p)
            elif ctype == b"INDX":
                if self._index_pos or self._single:
                    raise FormatError("more than one INDX chunk" if self._index_pos else
                                      "INDX chunk in a single-unit file")
                self._index_pos = self._chunk_pos
                self._parse_index(p)
            elif ctype == b"TAIL":
                if self._single:
                    raise FormatError("single-unit file ends before its unit")
                if len(p) != _TAIL.size:
                    raise FormatError("TAIL chunk has the wrong length")
                count, index_pos = _TAIL.unpack(p)
                if count != self._next or (self.header.frame_count and count != self.header.frame_count):
                    raise FormatError(f"TAIL says {count} units, the file holds {self._next}")
                if self._chunk_pos >= 0 and index_pos != max(self._index_pos, 0):
                    raise FormatError("TAIL does not point at the INDX chunk")
                if self._f.read(1):
                    raise FormatError("trailing bytes after TAIL")
                return
            elif ctype[:1].isupper():
                raise FormatError(f"unknown critical chunk {ctype!r}")
            # chunks whose type starts lower-case are ancillary: skipped

    def _parse_index(self, p: bytes) -> list[tuple[int, int]]:
        if len(p) < 4:
            raise FormatError("INDX chunk is too short")
        (n,) = struct.unpack_from("<I", p)
        if len(p) != 4 + n * _INDEX_ENTRY.size:
            raise FormatError("INDX chunk length does not match its entry count")
        return [_INDEX_ENTRY.unpack_from(p, 4 + i * _INDEX_ENTRY.size) for i in range(n)]

    def key_units(self) -> list[tuple[int, int]]:
        """(unit index, byte offset) of every key unit, from the index (seekable inputs)."""
        f = self._f
        if not f.seekable():
            raise FormatError("seeking needs a seekable input")
        if self._single:
            return [(0, self._first_unit)]
        here = f.tell()
        try:
            end = f.seek(0, io.SEEK_END)
            tail = _TAIL_CHUNK_BYTES[self.version]
            if end < tail:
                raise FormatError("file is truncated (no TAIL)")
            f.seek(end - tail)
            ctype, p = self._chunk()
            if ctype != b"TAIL" or len(p) != _TAIL.size:
                raise FormatError("file does not end with a TAIL chunk")
            _, index_pos = _TAIL.unpack(p)
            if not 0 < index_pos < end:
                raise FormatError("TAIL points outside the file")
            f.seek(index_pos)
            ctype, p = self._chunk()
            if ctype != b"INDX":
                raise FormatError("TAIL does not point at an INDX chunk")
            entries = self._parse_index(p)
            if any(not 0 < off < index_pos for _, off in entries):
                raise FormatError("INDX entry points outside the file")
            return entries
        finally:
            f.seek(here)

    def seek(self, unit_index: int) -> None:
        """Position the reader so that iteration continues at key unit ``unit_index``."""
        for idx, off in self.key_units():
            if idx == unit_index:
                self._f.seek(off)
                self._next = idx
                return
        raise FormatError(f"unit {unit_index} is not a key unit in the index")


def pack(header: Header, units: list[tuple[UnitType, int, bytes]]) -> bytes:
    """A whole container in memory: ``units`` are ``(type, symbol checksum, payload)``."""
    buf = io.BytesIO()
    with ContainerWriter(buf, header) as w:
        for t, crc, payload in units:
            w.write_unit(t, crc, payload)
    return buf.getvalue()


def unpack(src: bytes | IO[bytes]) -> tuple[Header, list[Unit]]:
    """Parse and fully check a container; returns its header and units."""
    r = ContainerReader(src)
    return r.header, list(r)
