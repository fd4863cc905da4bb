"""Lossless image coding with hidden Chow-Liu tree circuits on the shared rANS coder.

Two kinds of shipped circuit (``codec/weights/lossless_*.safetensors`` + registry ``.json``):

* ``hclt-photo`` (default): any 8-bit RGB or grey image of any size. Every pixel's G, R, B
  prediction residuals are coded with their exact conditional pmf given 12 context variables
  of the decoded neighbourhood (and the channels already coded), computed as circuit
  marginals (:mod:`models.hclt_pixels`); wavefront order lets a whole anti-diagonal be decoded
  as one batch. The three residual leaves of the circuit adapt to the image while it is
  coded, and so does the distribution of each target's hidden state given its parent's
  (online EM after every wavefront, pulled towards the shipped parameters with
  ``adapt_strength`` pseudo-samples, old counts decayed by ``adapt_decay`` per wave; all
  stored in the header). Grey images sum the colour variables out of the same circuit.
* ``hclt-mnist`` / ``hclt-fashion-mnist``: one circuit over all 784 pixels of a 28x28 grey
  image; every pixel is coded with its exact conditional given the pixels before it in the
  tree's pre-order, by the efficient scheme of :mod:`models.hclt_coding`.

Inputs: ``H x W x C`` uint8 with C = 1 (grey) or 3 (RGB), as numpy arrays, Pillow images or
torch tensors (:mod:`codec.convert`); ``decode`` returns any of the three (``output=``). Alpha (C = 4) and 16-bit samples
are refused with :class:`CodecError` (drop/flatten alpha or reduce to 8 bits first); they are
never silently altered. All pmfs are float64 from fixed-order numba kernels: bit-identical on
encoder and decoder at any thread count; the unit's symbol checksum guards the rest.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bitstream import (ColorFormat, FormatError, Header, RansDecoder, RansEncoder, StreamKind,
                       UnitType, pack, unpack)
from bitstream.container import LIMITS

from .convert import ArrayCodec, ImageLike, to_array
from .errors import CodecError

if TYPE_CHECKING:
    from models.hclt_coding import CircuitTables

__all__ = ["LosslessCodec", "MODELS", "load_circuit"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: model id -> weights name (``codec/weights/lossless_<name>.*``)
MODELS = {"hclt-photo": "photo", "hclt-mnist": "mnist", "hclt-fashion-mnist": "fashion_mnist"}
PRECISION = 24  #: rANS precision of the pmf quantization
ADAPT_DECAY = 0.98  #: photo codec: per-wave forgetting factor of the adapted counts (measured: 0.98 best of 1, 0.995, 0.98, 0.95, 0.9)
ADAPT_EDGE = True  #: photo codec: also adapt each target's hidden-state distribution (measured: -0.1 %)
ADAPT_STRENGTH = 32.0  #: photo codec: weight of the shipped target leaves, in pseudo-samples (measured: 16-64 best)
_SET_CHUNK = 128  #: images per batch of an image-set stream


@lru_cache(maxsize=None)
def load_circuit(model_id: str,
                 weights_dir: str | None = None) -> tuple[CircuitTables, bytes, dict[str, Any]]:
    """``(tables, sha256 digest, registry entry)`` of a shipped circuit; checks the file's
    sha256 against its registry entry."""
    from safetensors.numpy import load

    from models.hclt_coding import CircuitTables

    if model_id not in MODELS:
        raise CodecError(f"unknown lossless model {model_id!r} (known: {', '.join(MODELS)})")
    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    path = d / f"lossless_{MODELS[model_id]}.safetensors"
    try:
        raw = path.read_bytes()
        entry = json.loads((d / f"lossless_{MODELS[model_id]}.json").read_text())
    except FileNotFoundError as e:
        raise CodecError(f"weights of {model_id} missing: {e.filename}") from None
    digest = hashlib.sha256(raw).digest()
    if entry.get("sha256") != digest.hex():
        raise CodecError(f"{path.name}: sha256 does not match its registry entry (corrupt weights)")
    try:
        tables = CircuitTables.from_codes(load(raw))
    except Exception as e:  # noqa: BLE001 - any parse failure of a shipped file is one error
        raise CodecError(f"{path.name}: cannot load the circuit ({e})") from None
    return tables, digest, entry


def _check_image(image: ImageLike) -> np.ndarray:
    a = to_array(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise CodecError(f"expected an H x W x C image, got shape {a.shape}")
    if a.dtype == np.uint16:
        raise CodecError("16-bit images are not supported by the lossless codec (8-bit only)")
    if a.dtype != np.uint8:
        raise CodecError(f"expected uint8 samples, got {a.dtype}")
    if a.shape[2] == 4:
        raise CodecError("images with alpha are not supported by the lossless codec "
                         "(drop or flatten the alpha channel first)")
    if a.shape[2] not in (1, 3):
        raise CodecError(f"expected 1 (grey) or 3 (RGB) channels, got {a.shape[2]}")
    h, w = a.shape[:2]
    if h > LIMITS["max_dimension"] or w > LIMITS["max_dimension"] or h * w > LIMITS["max_pixels"]:
        raise CodecError(f"image of {w}x{h} pixels exceeds the format limits")
    return np.ascontiguousarray(a)


@contextmanager
def _serial_numba() -> Iterator[None]:
    """Run numba kernels on the calling thread only: the decoder makes thousands of small
    calls, and waking worker threads costs milliseconds per call on a loaded CPU."""
    import numba

    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(n)


class LosslessCodec(ArrayCodec):
    """Lossless coder: ``encode(image) -> bytes`` (a complete ``.ncz`` file) and
    ``decode(bytes) -> image``. ``model`` picks the circuit used to *encode*; decoding always
    uses the model named in the file (and checks its weights digest). ``decode(data,
    output="numpy" | "pil" | "torch", device=None)`` gives grey or RGB as coded
    (:class:`codec.convert.ArrayCodec`)."""

    def __init__(self, model: str = "hclt-photo", weights_dir: str | None = None) -> None:
        if model not in MODELS:
            raise CodecError(f"unknown lossless model {model!r} (known: {', '.join(MODELS)})")
        self.model = model
        self.weights_dir = weights_dir

    # -- public API -------------------------------------------------------------------------
    def encode(self, image: ImageLike) -> bytes:
        """Code one 8-bit grey or RGB image losslessly (numpy ``H x W x C`` with C = 1 or 3
        or ``H x W``, PIL image, torch ``C x H x W`` uint8 or float in ``[0, 1]``, rounded to
        8 bits); returns the file bytes. Alpha and 16-bit input raise :class:`CodecError`."""
        a = _check_image(image)
        h, w, c = a.shape
        tables, digest, _ = load_circuit(self.model, self.weights_dir)
        enc = RansEncoder()
        params = {"codec": "hclt", "precision": PRECISION}
        if self.model == "hclt-photo":
            params.update(adapt_strength=ADAPT_STRENGTH, adapt_decay=ADAPT_DECAY,
                          adapt_edge=ADAPT_EDGE)
            self._encode_photo(tables, a, enc, ADAPT_STRENGTH, ADAPT_DECAY, ADAPT_EDGE)
        else:
            self._check_small(tables, h, w, c)
            x = a.reshape(1, -1).astype(np.int64)
            with _serial_numba():
                enc.encode_categorical(x[0, tables.order], tables.conditionals(x)[0], PRECISION)
        payload = enc.flush()
        header = Header(StreamKind.LOSSLESS, w, h, ColorFormat.GRAY if c == 1 else ColorFormat.RGB,
                        8, model_id=self.model, weights_digest=digest, params=params)
        return pack(header, [(UnitType.KEY, enc.checksum, payload)])

    def _decode_array(self, data: bytes) -> np.ndarray:
        """The exact pixels (``H x W x C`` uint8, C = 1 or 3) of a file made by :meth:`encode`;
        :meth:`decode` converts them."""
        header, units = unpack(data)
        if header.kind != StreamKind.LOSSLESS:
            raise CodecError(f"not a lossless stream ({StreamKind(header.kind).name.lower()})")
        if header.model_id not in MODELS:
            raise CodecError(f"file needs lossless model {header.model_id!r}, which this build lacks")
        if header.color_format not in (ColorFormat.GRAY, ColorFormat.RGB) or header.bit_depth != 8:
            raise FormatError(f"lossless stream with unsupported colour format "
                              f"{ColorFormat(header.color_format).name} / bit depth {header.bit_depth}")
        if "count" in header.params:
            raise FormatError("this file holds a set of images: decode it with decode_set")
        if header.params.get("precision") != PRECISION or header.params.get("codec") != "hclt":
            raise FormatError("lossless stream parameters are not the ones this decoder knows")
        if len(units) != 1:
            raise FormatError(f"a lossless image holds 1 unit, this file has {len(units)}")
        tables, digest, _ = load_circuit(header.model_id, self.weights_dir)
        if not header.digest_matches(digest):
            raise CodecError(f"file was made with other weights for {header.model_id} "
                             f"(digest {header.weights_digest.hex()[:16]}..., "
                             f"shipped {digest.hex()[:16]}...)")
        h, w = header.height, header.width
        c = 1 if header.color_format == ColorFormat.GRAY else 3
        dec = RansDecoder(units[0].payload)
        with _serial_numba():
            if header.model_id == "hclt-photo":
                strength = header.params.get("adapt_strength")
                decay = header.params.get("adapt_decay")
                edge = header.params.get("adapt_edge")
                if not (isinstance(strength, (int, float)) and isinstance(decay, (int, float))
                        and isinstance(edge, bool) and 0 < strength <= 1e9 and 0 < decay <= 1):
                    raise FormatError("lossless photo stream lacks valid adaptation parameters")
                out = self._decode_photo(tables, dec, h, w, c, float(strength), float(decay), edge)
            else:
                out = self._decode_small(tables, dec, h, w, c, header.model_id)
        dec.finish()
        if dec.checksum != units[0].checksum:
            raise FormatError("decoded symbols do not match the stream's checksum")
        return out

    def encode_set(self, images: np.ndarray) -> bytes:
        """Code ``N`` 28x28 grey images (``N x 28 x 28`` uint8) with a small-image circuit as
        one file: one rANS stream, one header (the container overhead is paid once)."""
        if self.model == "hclt-photo":
            raise CodecError("encode_set is for the 28x28 circuits (hclt-mnist, hclt-fashion-mnist)")
        a = np.asarray(images)
        if a.ndim != 3 or a.dtype != np.uint8 or len(a) < 1:
            raise CodecError(f"expected N x H x W uint8 images, got {a.shape} {a.dtype}")
        tables, digest, _ = load_circuit(self.model, self.weights_dir)
        n, h, w = a.shape
        self._check_small(tables, h, w, 1)
        x = a.reshape(n, -1).astype(np.int64)
        enc = RansEncoder()
        for c0 in range(0, n, _SET_CHUNK):  # per chunk of images: variable-major
            xc = x[c0:c0 + _SET_CHUNK]
            pmf = tables.conditionals(xc)  # (chunk, D, V)
            enc.encode_categorical(xc[:, tables.order].T.reshape(-1),
                                   pmf.transpose(1, 0, 2).reshape(-1, tables.alphabet), PRECISION)
        header = Header(StreamKind.LOSSLESS, w, h, ColorFormat.GRAY, 8, model_id=self.model,
                        weights_digest=digest,
                        params={"codec": "hclt", "precision": PRECISION, "count": n})
        return pack(header, [(UnitType.KEY, enc.checksum, enc.flush())])

    def decode_set(self, data: bytes) -> np.ndarray:
        """Inverse of :meth:`encode_set`: ``N x 28 x 28`` uint8."""
        header, units = unpack(data)
        n = header.params.get("count")
        if header.kind != StreamKind.LOSSLESS or not isinstance(n, int) or len(units) != 1:
            raise FormatError("not a lossless image-set stream")
        if n < 1 or n * header.width * header.height > LIMITS["max_pixels"]:
            raise FormatError(f"image-set count {n} out of range")
        if header.model_id not in MODELS or header.model_id == "hclt-photo":
            raise CodecError(f"image-set stream with unknown model {header.model_id!r}")
        tables, digest, _ = load_circuit(header.model_id, self.weights_dir)
        if not header.digest_matches(digest):
            raise CodecError(f"file was made with other weights for {header.model_id}")
        if header.width * header.height != tables.num_vars:
            raise FormatError("image size does not match the circuit")
        dec = RansDecoder(units[0].payload)
        x = np.empty((n, tables.num_vars), np.int64)
        with _serial_numba():
            for c0 in range(0, n, _SET_CHUNK):
                seq = tables.sequential(min(_SET_CHUNK, n - c0))
                for i in range(tables.num_vars):
                    s = dec.decode_categorical(seq.pmfs(i), PRECISION)
                    seq.observe(i, s)
                    x[c0:c0 + _SET_CHUNK, tables.order[i]] = s
        dec.finish()
        if dec.checksum != units[0].checksum:
            raise FormatError("decoded symbols do not match the stream's checksum")
        return x.reshape(n, header.height, header.width).astype(np.uint8)

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _check_small(tables: CircuitTables, h: int, w: int, c: int) -> None:
        if c != 1 or h * w != tables.num_vars:
            raise CodecError(f"this circuit codes {tables.num_vars}-pixel grey images "
                             f"(28x28), got {w}x{h}x{c}; use the default model for photos")

    @staticmethod
    def _decode_small(tables: CircuitTables, dec: RansDecoder, h: int, w: int, c: int, model_id: str) -> np.ndarray:
        if h * w != tables.num_vars or c != 1:
            raise FormatError(f"{model_id} codes {tables.num_vars}-pixel grey images, "
                              f"the header says {w}x{h}x{c}")
        seq = tables.sequential(1)
        x = np.empty(tables.num_vars, np.int64)
        for i in range(tables.num_vars):
            s = dec.decode_categorical(seq.pmfs(i), PRECISION)
            seq.observe(i, s)
            x[tables.order[i]] = s[0]
        return x.reshape(h, w, 1).astype(np.uint8)

    @staticmethod
    def _observed(c: int) -> list[np.ndarray]:
        """Per coded channel: the circuit variables observed when it is coded."""
        from models.hclt_pixels import COLOR_CONTEXT, GRAY_CONTEXT, NUM_VARS

        ctx = GRAY_CONTEXT if c == 1 else COLOR_CONTEXT
        masks = []
        for ch in range(c):
            m = np.zeros(NUM_VARS, bool)
            m[list(ctx)] = True
            m[:ch] = True
            masks.append(m)
        return masks

    def _photo_waves(self, tables: CircuitTables, h: int, w: int, c: int,
                     code: Callable[[int, np.ndarray, np.ndarray], np.ndarray], strength: float,
                     decay: float, edge: bool) -> np.ndarray:
        """The one wavefront loop of the photo codec, shared by encoder and decoder:
        ``code(ch, pix, pmf) -> symbols`` codes (or decodes) channel ``ch`` of pixels ``pix``.
        The target leaves adapt to the image as it is coded (:class:`AdaptiveLeaf`)."""
        from models.hclt_coding import AdaptiveLeaf
        from models.hclt_pixels import context_rows, reconstruct, wavefronts

        order, ptr = wavefronts(h, w)
        masks = self._observed(c)
        leaves = [AdaptiveLeaf(tables, ch, strength, decay, edge) for ch in range(c)]
        img = np.zeros((3, h, w), np.int16)
        res = np.zeros_like(img)
        for t in range(len(ptr) - 1):
            pix = order[ptr[t]:ptr[t + 1]]
            rows = context_rows(img, res, pix)
            for ch in range(c):
                pmf, wts = tables.query(rows, masks[ch], ch, leaves[ch], weights=True)
                s = code(ch, pix, pmf)
                rows[:, ch] = s
                reconstruct(img, res, pix, ch, s)
                us, vs = wts
                leaves[ch].update(us, vs, s)
        return img

    def _encode_photo(self, tables: CircuitTables, a: np.ndarray, enc: RansEncoder, strength: float,
                      decay: float, edge: bool) -> None:
        from models.hclt_pixels import pixel_variables

        h, w, c = a.shape
        targets = pixel_variables(a)

        def code(ch: int, pix: np.ndarray, pmf: np.ndarray) -> np.ndarray:
            s = targets[pix, ch]
            enc.encode_categorical(s, pmf, PRECISION)
            return s

        with _serial_numba():
            self._photo_waves(tables, h, w, c, code, strength, decay, edge)

    def _decode_photo(self, tables: CircuitTables, dec: RansDecoder, h: int, w: int, c: int, strength: float,
                      decay: float, edge: bool) -> np.ndarray:
        img = self._photo_waves(tables, h, w, c,
                                lambda ch, pix, pmf: dec.decode_categorical(pmf, PRECISION),
                                strength, decay, edge)
        if c == 1:
            return img[0][:, :, None].astype(np.uint8)
        return np.stack([img[1], img[0], img[2]], -1).astype(np.uint8)
