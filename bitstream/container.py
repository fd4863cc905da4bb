"""Reader and writer of the ncodec container (``.ncz``); the byte-level spec is FORMAT.md.

A file is a signature, a version, then typed chunks ``length | type | payload | crc32``:
``HEAD`` (once, first), ``UNIT`` (one per coded image or frame), ``INDX`` (key units and
their offsets, for seeking) and ``TAIL`` (last; unit count and where ``INDX`` is). Every
reader check raises :class:`FormatError`; limits are checked before anything is allocated.
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
VERSION = (1, 0)  #: (major, minor); readers accept any minor of their major
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
_HEAD_FIXED = struct.Struct("<BBBBHIIfIII")  # kind colour depth flags coder w h q fps_n fps_d frames
_UNIT_FIXED = struct.Struct("<IBI")  # index, type, symbol checksum
_TAIL = struct.Struct("<IQ")  # unit count, INDX offset (0: none)
_INDEX_ENTRY = struct.Struct("<IQ")
_TAIL_CHUNK_BYTES = _CHUNK_HEAD.size + _TAIL.size + _CRC.size
_READ_PIECE = 1 << 20


@dataclass(frozen=True)
class Header:
    """What a decoder needs before the first unit. ``frame_count`` 0 means not yet known
    (a stream still being written); ``params`` holds codec-specific scalars (JSON object)."""

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
        if len(self.weights_digest) != 32:
            raise FormatError("header: weights digest must be 32 bytes")
        if self.color_format == ColorFormat.YUV420 and (self.width % 2 or self.height % 2):
            raise FormatError("header: YUV 4:2:0 needs even dimensions")

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


def _encode_header(h: Header) -> bytes:
    h.validate()
    mid = h.model_id.encode("ascii")
    params = json.dumps(h.params, sort_keys=True, separators=(",", ":")).encode() if h.params else b""
    if len(mid) > LIMITS["max_model_id"] or len(params) > LIMITS["max_params_bytes"]:
        raise ValueError("model id or params too long")
    if not all(isinstance(v, (int, float, str, bool)) for v in h.params.values()):
        raise ValueError("header params must be scalars (int, float, str, bool)")
    fixed = _HEAD_FIXED.pack(h.kind, h.color_format, h.bit_depth, 0, h.coder_version, h.width,
                             h.height, h.quality, h.fps_num, h.fps_den, h.frame_count)
    return (fixed + bytes([len(mid)]) + mid + h.weights_digest
            + struct.pack("<H", len(params)) + params)


def _decode_header(p: bytes) -> Header:
    try:
        (kind, colour, depth, flags, coder, w, h, q, fn, fd, frames) = _HEAD_FIXED.unpack_from(p)
        o = _HEAD_FIXED.size
        n = p[o]
        mid = p[o + 1:o + 1 + n].decode("ascii")
        o += 1 + n
        digest = p[o:o + 32]
        (plen,) = struct.unpack_from("<H", p, o + 32)
        raw = p[o + 34:o + 34 + plen]
        if len(digest) != 32 or len(raw) != plen or o + 34 + plen != len(p):
            raise FormatError("HEAD chunk has the wrong length")
        params = json.loads(raw) if plen else {}
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"HEAD chunk is malformed ({type(e).__name__})") from None
    if flags:
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
    return hdr


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    if len(payload) > LIMITS["max_chunk_bytes"]:
        raise ValueError(f"chunk of {len(payload)} bytes exceeds the format limit")
    return (_CHUNK_HEAD.pack(len(payload), ctype) + payload
            + _CRC.pack(zlib.crc32(payload, zlib.crc32(ctype))))


class ContainerWriter:
    """Writes a container to a binary file object, unit by unit (streaming).

    ``close()`` (or leaving the ``with`` block) writes the index and the tail; on a seekable
    output a header written with ``frame_count=0`` gets the final count patched in.
    """

    def __init__(self, f: IO[bytes], header: Header) -> None:
        self._f = f
        self._header = header
        self._count = 0
        self._keys: list[tuple[int, int]] = []
        self._pos = 0
        self._head_pos = len(SIGNATURE) + 2
        self._write(SIGNATURE + bytes(VERSION))
        self._write(_chunk(b"HEAD", _encode_header(header)))

    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._pos += len(b)

    def write_unit(self, unit_type: UnitType, checksum: int, payload: bytes) -> int:
        """Append a unit; returns its index."""
        if self._count >= LIMITS["max_frames"]:
            raise ValueError("too many units")
        if self._header.frame_count and self._count >= self._header.frame_count:
            raise ValueError(f"header announced {self._header.frame_count} units")
        if unit_type == UnitType.KEY:
            self._keys.append((self._count, self._pos))
        self._write(_chunk(b"UNIT", _UNIT_FIXED.pack(self._count, unit_type, checksum) + payload))
        self._count += 1
        return self._count - 1

    def close(self) -> None:
        """Write the index and the tail (and patch the frame count in, see the class)."""
        h = self._header
        if h.frame_count and self._count != h.frame_count:
            raise ValueError(f"header announced {h.frame_count} units, {self._count} written")
        index_pos = self._pos
        entries = b"".join(_INDEX_ENTRY.pack(i, off) for i, off in self._keys)
        self._write(_chunk(b"INDX", struct.pack("<I", len(self._keys)) + entries))
        self._write(_chunk(b"TAIL", _TAIL.pack(self._count, index_pos)))
        if h.frame_count == 0 and self._f.seekable():
            end = self._f.tell()
            self._f.seek(end - self._pos + self._head_pos)
            patched = dataclasses.replace(h, frame_count=self._count)
            self._f.write(_chunk(b"HEAD", _encode_header(patched)))
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
        if ver[0] != VERSION[0]:
            raise FormatError(f"unsupported format version {ver[0]}.{ver[1]} "
                              f"(this reader knows {VERSION[0]}.x)")
        ctype, payload = self._chunk()
        if ctype != b"HEAD":
            raise FormatError(f"first chunk is {ctype!r}, expected HEAD")
        self.header = _decode_header(payload)
        self._next = 0
        self._index_pos = 0

    def _chunk(self) -> tuple[bytes, bytes]:
        self._chunk_pos = self._f.tell() if self._f.seekable() else -1
        raw = self._f.read(_CHUNK_HEAD.size)
        if len(raw) != _CHUNK_HEAD.size:
            raise FormatError("file is truncated (missing chunk or TAIL)")
        length, ctype = _CHUNK_HEAD.unpack(raw)
        if length > LIMITS["max_chunk_bytes"]:
            raise FormatError(f"chunk length {length} exceeds the limit {LIMITS['max_chunk_bytes']}")
        name = ctype.decode("latin-1")
        payload = _read_exact(self._f, length, f"chunk {name!r}")
        (crc,) = _CRC.unpack(_read_exact(self._f, _CRC.size, f"the CRC of chunk {name!r}"))
        if crc != zlib.crc32(payload, zlib.crc32(ctype)):
            raise FormatError(f"CRC mismatch in chunk {name!r}: the file is corrupt")
        return ctype, payload

    def __iter__(self) -> Iterator[Unit]:
        while True:
            ctype, p = self._chunk()
            if ctype == b"UNIT":
                if len(p) < _UNIT_FIXED.size:
                    raise FormatError("UNIT chunk is too short")
                idx, utype, crc = _UNIT_FIXED.unpack_from(p)
                if idx != self._next:
                    raise FormatError(f"unit {idx} found where unit {self._next} was expected")
                if utype not in UnitType._value2member_map_:
                    raise FormatError(f"unit {idx} has an unknown type {utype}")
                if self.header.frame_count and idx >= self.header.frame_count:
                    raise FormatError(f"more units than the {self.header.frame_count} announced")
                self._next += 1
                yield Unit(idx, UnitType(utype), crc, p[_UNIT_FIXED.size:])
            elif ctype == b"INDX":
                if self._index_pos:
                    raise FormatError("more than one INDX chunk")
                self._index_pos = self._chunk_pos
                self._parse_index(p)
            elif ctype == b"TAIL":
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
        here = f.tell()
        try:
            end = f.seek(0, io.SEEK_END)
            if end < _TAIL_CHUNK_BYTES:
                raise FormatError("file is truncated (no TAIL)")
            f.seek(end - _TAIL_CHUNK_BYTES)
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
