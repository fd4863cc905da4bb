"""``VideoEncoder`` / ``VideoDecoder``: the learned video codec (DCVC-FM-style, :mod:`models.video`).

Frame by frame, with memory bounded by one frame of state (the previous decoded frame, its
propagated feature and MV latent)::

    enc = VideoEncoder(out, width=W, height=H, fmt="yuv420", quality=1.5)
    recon = enc.encode(frame)   # (Y, U, V) uint8 planes, or H x W x 3 uint8 RGB
    enc.close()
    dec = VideoDecoder(data)    # bytes or a readable binary file
    for frame in dec: ...       # equal to the encoder's returns, bit for bit

Container: kind VIDEO; one unit per frame, KEY for intra frames (listed in the index, so
:meth:`VideoDecoder.seek` can start at any of them), INTER for P frames. A unit's payload is
one flag byte and one rANS stream; its symbol checksum is checked. The flag byte of a P frame
is 0, 1 (the propagated feature is rebuilt from the previous decoded frame first), 2 (a skip
frame: only its motion is coded, the frame is the motion-compensated prediction; layout
version 2), 4 or 5 (a P frame with copy blocks, bit 0 the refresh: a block mask comes first,
and the masked 16 x 16 blocks are the motion-compensated prediction, their latent not coded)
or 8 (a replenished frame: a block mask, then an intra frame whose masked blocks are not
coded but copied from the previous decoded frame; layout version 3) or 16, 20 (a residual
frame: the motion as in a skip frame, then the residual to its motion-compensated prediction
coded by the image model, in RGB; 20 with a block mask first, whose masked blocks are the
prediction and their residual latent not coded; layout version 4); an intra frame's is 0.
The block masks are coded with an adaptive binary context model (:class:`_MaskModel`) whose
counts restart at every intra frame.
Header params: ``v`` (layout version: 4; 1, without skip frames, 2, without copy blocks,
and 3, without residual frames, are still read), ``residual_q`` (the image model's quality
for residual frames; version 4),
``intra_period``, ``refresh_period``, ``intra_model`` and ``intra_digest`` (the image model
coding the intra frames), and ``width``/``height`` for odd-sized YUV 4:2:0 (the container's
header holds the even-rounded size then).

Intra frames are coded with the image codec's model (:mod:`models.image`, the shipped
``image_small``): its latent decoding is exact; its synthesis (including the latent residual
prediction) runs here in float64 and is rounded to 8 bits. That reconstruction is the
reference of the next P frame; float64 is not exact, so a different thread count could in
principle move a pixel that lies within ~1e-12 of a rounding boundary (measured on a 640x480
frame of asl_book: the float64 outputs at 1 and 2 threads were identical, and the value
nearest to a rounding boundary was 4.5e-8 away from it); a desynchronisation that changes
probabilities is caught by the symbol checksums of the following P frames
(:class:`FormatError`). Everything of the P frames runs on
the exact grid path (float64, :meth:`models.video.VideoModel.deterministic`).

YUV 4:2:0 is coded natively (Y pixel-unshuffled + U + V at H/2); for the intra frame it is
converted to RGB and back (BT.601 full-range matrices, internal only).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import torch

from bitstream import FormatError, Header, RansDecoder, RansEncoder, StreamKind, UnitType
from bitstream.container import ColorFormat, ContainerReader, ContainerWriter

from .errors import CodecError
from .metrics import bpp

__all__ = ["VideoEncoder", "VideoDecoder", "export_weights", "load_model", "WEIGHTS_DIR",
           "DEFAULT_MODEL", "rgb_to_yuv420", "yuv420_to_rgb"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "video_small"
FORMAT_VERSION = 4
_SKIP = 2  # unit flags: skip frame (bit 0 is the feature refresh)
_COPY = 4  # P frame with copy blocks (may carry the refresh bit); in a residual frame: a mask
_REPLENISH = 8  # intra-coded blocks over a copy of the previous frame
_RESIDUAL = 16  # motion + the image-model-coded residual to the motion-compensated prediction
_VERSIONS = (1, 2, 3, FORMAT_VERSION)  # layout versions read
# A residual frame replaces an intra frame where its cost with the distortion weighted
# 1 + _REF_WEIGHT is lower: both are references that restart the P-frame chain, and the frame
# cost alone (weight 0) chose too many cheap, poor references (results/video/residual/).
_REF_WEIGHT = 1.0
# Copy-block decisions: a block is copied where lambda * (its distortion increase) <= K * the
# bits its latent cost when coded (K > 1: a coded latent position also shapes its neighbours,
# so a copy saves more than its own symbols; K = 2 beat 1, 3 and 4: results/video/copy_k_sweep).
_COPY_K = 2.0
_COLOR = {"yuv420": ColorFormat.YUV420, "rgb": ColorFormat.RGB}
_KR, _KB = 0.299, 0.114


# ---- colour (internal: intra frames of YUV video go through the RGB image model) --------
def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Full-range BT.601 4:2:0 -> RGB float64 in [0, 255] (chroma replicated 2x2), H x W x 3."""
    h, w = y.shape
    up = lambda c: np.repeat(np.repeat(c, 2, 0), 2, 1)[:h, :w].astype(np.float64) - 128.0  # noqa: E731
    yf, cb, cr = y.astype(np.float64), up(u), up(v)
    r = yf + 2.0 * (1.0 - _KR) * cr
    b = yf + 2.0 * (1.0 - _KB) * cb
    g = (yf - _KR * r - _KB * b) / (1.0 - _KR - _KB)
    return np.clip(np.stack([r, g, b], -1), 0.0, 255.0)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`yuv420_to_rgb` up to rounding (even H, W): uint8 planes."""
    a = np.asarray(rgb, np.float64)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    yf = _KR * r + (1.0 - _KR - _KB) * g + _KB * b
    cb, cr = (b - yf) / (2.0 * (1.0 - _KB)), (r - yf) / (2.0 * (1.0 - _KR))
    h, w = yf.shape
    down = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean((1, 3)) + 128.0  # noqa: E731
    q = lambda p: np.clip(np.rint(p), 0, 255).astype(np.uint8)  # noqa: E731
    return q(yf), q(down(cb)), q(down(cr))


# ---- weights ---------------------------------------------------------------------------
def _grid_weight_names(model) -> set:
    from models.layers import QConv2d

    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, QConv2d)}


def export_weights(model, dest: Path, info: dict | None = None) -> dict:
    """Write ``model`` (a :class:`models.video.VideoModel`) as safetensors with its coder
    tables, and the registry JSON beside it; returns the registry entry. Grid weights are
    stored as their exact int16 grid codes, encoder-only float weights in float16."""
    from models.layers import W_BITS, W_MAX

    from .image import _tensors_of_tables, save_weights

    dest = Path(dest)
    model = model.float().eval()
    grid = _grid_weight_names(model)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if k in grid:
            v = torch.round(torch.clamp(v, -W_MAX, W_MAX) * (1 << W_BITS)).to(torch.int16)
        elif k.split(".")[0] in model.ENCODER_ONLY and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    tables = model.build_tables()
    for name, t in (("gauss", tables["gauss"]), ("y", tables["y"][0]), ("mv", tables["mv"][0])):
        tensors.update(_tensors_of_tables(f"tables.{name}", t))
    tensors["tables.y.medians"] = torch.from_numpy(tables["y"][1])
    tensors["tables.mv.medians"] = torch.from_numpy(tables["mv"][1])
    return save_weights(model, tensors, dest, "ncodec-video-1", info)


def load_model(weights: str | Path | None = None):
    """``(model, tables, digest, model_id)`` of a shipped weights file."""
    from safetensors import safe_open
    from safetensors.torch import load

    from models.entropy import tables_from_arrays
    from models.layers import W_BITS
    from models.video import VideoModel, VideoModelConfig

    path = Path(weights) if weights else WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"
    if not path.exists():
        raise CodecError(f"video model weights not found: {path}")
    raw = path.read_bytes()
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        sd = load(raw)
        model = VideoModel(VideoModelConfig.from_dict(json.loads(meta["config"])))
    except Exception as e:  # noqa: BLE001 - any malformed file is one clear error
        raise CodecError(f"{path}: not a video model weights file ({type(e).__name__}: {e})") from None
    tabs = {k: v for k, v in sd.items() if k.startswith("tables.")}
    state = {k: (v.float() / (1 << W_BITS) if v.dtype == torch.int16 else v.float())
             for k, v in sd.items() if k not in tabs}
    model.load_state_dict(state)

    def arr(p):
        return tables_from_arrays({k[len(p) + 1:]: tabs[k].numpy() for k in tabs
                                   if k.startswith(p + ".") and not k.endswith("medians")})

    tables = {"gauss": arr("tables.gauss"),
              "y": (arr("tables.y"), tabs["tables.y.medians"].numpy().astype(np.float64)),
              "mv": (arr("tables.mv"), tabs["tables.mv.medians"].numpy().astype(np.float64))}
    return model.eval(), tables, hashlib.sha256(raw).digest(), path.stem


# ---- intra frames: the image model, reconstructed in float64 -----------------------------
class _Intra:
    def __init__(self, weights=None, model=None):
        from .image import ImageCodec

        self.codec = ImageCodec(weights=weights, model=model)
        m = self.codec.model
        self.m = m
        self.g_s = copy.deepcopy(m.g_s).double().eval()
        self.lrp = copy.deepcopy(m.latent.lrp).double().eval()

    @property
    def digest(self) -> bytes:
        return self.codec.digest

    def _synth(self, r: dict, q: float) -> torch.Tensor:
        """The float64 reconstruction of a coded latent (``compress_latent``'s result): the
        residual prediction again, from the hyperprior features, then the synthesis."""
        m, cs = self.m, self.m.latent.cs
        y_hat, hyper = r["y_hat"].double(), r["hyper"].double()
        recs = [y_hat[:, s * cs:(s + 1) * cs] + 0.5 * torch.tanh(
            self.lrp[s](torch.cat([hyper, y_hat[:, :(s + 1) * cs]], 1)))
            for s in range(m.latent.slices)]
        scale = m._scaler(m.q_dec, torch.tensor([float(q)])).double()
        x = self.g_s(torch.cat(recs, 1) * scale)
        return torch.round(torch.clamp(x, 0, 1) * 255.0)  # integer-valued float64

    def encode(self, rgb: torch.Tensor, q: float, coder, skip=None, refine=None) -> tuple:
        """(RGB reconstruction, estimated latent bits per 16 x 16 block); ``refine`` an
        :class:`models.sga.ImageRefiner` of this model, or None."""
        y = self.m.analysis(rgb.float(), q)
        if refine is not None:
            y = refine(rgb.float(), y, q)
        r = self.m.compress_latent(y, coder, self.codec.tables, skip)
        return self._synth(r, q), r["bits"]

    def decode(self, coder, hp: int, wp: int, q: float, skip=None) -> torch.Tensor:
        r = self.m.decompress_latent(coder, self.codec.tables, hp // 16, wp // 16, skip)
        return self._synth(r, q)


# ---- copy-block masks -------------------------------------------------------------------
class _MaskModel:
    """Adaptive binary context model of the copy-block masks (one bit per 16 x 16 block).

    A mask is coded in two checkerboard passes, each one vectorized rANS call: the anchors
    with the co-located bit of the previous frame's mask as context (or "none"), then the
    others with the share of copied anchors among their four neighbours (0..4) and that same
    bit. Probabilities are integer counts per context and mask kind, updated after each pass
    (halved past ``_LIMIT``); the encoder and decoder update them identically, and both
    restart them at an intra frame (where decoding may start)."""

    _LIMIT = 1 << 10

    def __init__(self):
        self.counts = np.ones((2, 18, 2), np.int64)
        self.prev: np.ndarray | None = None

    def _pmf(self, kind: int, ctx: np.ndarray) -> np.ndarray:
        c = self.counts[kind, ctx].astype(np.float64)
        return c / c.sum(1, keepdims=True)

    def code(self, coder, kind: int, shape: tuple, mask: np.ndarray | None = None) -> np.ndarray:
        """Encode ``mask`` (h x w of 0/1; ``coder`` a RansEncoder) or decode one (``mask``
        None); returns it. ``kind`` 0: P-frame copy blocks, 1: replenished frame."""
        h, w = shape
        ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        anchor = (ii + jj) % 2 == 0
        prev = self.prev if self.prev is not None and self.prev.shape == shape else None
        pc = np.full(shape, 2, np.int64) if prev is None else prev.astype(np.int64)
        out = np.zeros(shape, np.int64)
        ctx_a = pc[anchor]
        out[anchor] = self._pass(coder, kind, ctx_a, None if mask is None else mask[anchor])
        nb = np.pad(out, 1)
        cnt = np.pad(anchor.astype(np.int64), 1)
        s = nb[:-2, 1:-1] + nb[2:, 1:-1] + nb[1:-1, :-2] + nb[1:-1, 2:]
        n = np.maximum(cnt[:-2, 1:-1] + cnt[2:, 1:-1] + cnt[1:-1, :-2] + cnt[1:-1, 2:], 1)
        ctx_b = (3 + 3 * ((4 * s + n // 2) // n) + pc)[~anchor]
        out[~anchor] = self._pass(coder, kind, ctx_b, None if mask is None else mask[~anchor])
        self.prev = out.astype(np.uint8)
        return self.prev

    def _pass(self, coder, kind, ctx, bits):
        """Code one pass's bits (contexts ``ctx``), then update the counts."""
        if ctx.size == 0:
            return np.zeros(0, np.int64)
        pmf = self._pmf(kind, ctx)
        if bits is not None:
            bits = bits.astype(np.int64)
            coder.encode_categorical(bits.astype(np.int32), pmf, 16)
        else:
            bits = coder.decode_categorical(pmf, 16).astype(np.int64)
        c = self.counts[kind]
        np.add.at(c, (ctx, bits), 1)
        while c.sum(1).max() > self._LIMIT:
            c[:] = (c + 1) // 2
        return bits


def _block_sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared error of two packed frames per 16 x 16-pixel block (1 x 1 x H/16 x W/16)."""
    d = ((a.double() - b.double()) ** 2).sum(1, keepdim=True)
    return torch.nn.functional.avg_pool2d(d, 8, 8) * 64.0


# ---- the shared frame loop -------------------------------------------------------------
class _Session:
    """Model, tables and the one-frame state shared by encoder and decoder."""

    def __init__(self, fmt: str, width: int, height: int, quality: float, weights=None,
                 model=None, intra_weights=None, intra_model=None):
        from models.video import PAD, VideoModel

        if fmt not in _COLOR:
            raise CodecError(f"unknown frame format {fmt!r} (use 'yuv420' or 'rgb')")
        if model is not None:
            self.model = model if isinstance(model, VideoModel) else VideoModel(model)
            self.model = self.model.float().eval()
            self.tables = self.model.build_tables()
            self.digest, self.model_id = hashlib.sha256(b"in-memory").digest(), "in-memory"
        else:
            self.model, self.tables, self.digest, self.model_id = load_model(weights)
        self.model.deterministic()
        self.intra = _Intra(intra_weights, intra_model)
        self.fmt, self.w, self.h = fmt, int(width), int(height)
        self.hp, self.wp = self.h + (-self.h) % PAD, self.w + (-self.w) % PAD
        nq = self.model.cfg.n_quality
        self.q = float(np.float32(min(max(float(quality), 0.0), nq - 1.0)))
        inq = self.intra.m.cfg.n_quality
        self.q_intra = float(np.float32(self.q * (inq - 1) / (nq - 1)))
        #: the image model's quality for residual frames (the decoder takes the stream's)
        self.q_res = self.q_intra
        self.reset()

    def reset(self) -> None:
        self.ref_frame: torch.Tensor | None = None
        self.ref_feat: torch.Tensor | None = None
        self.prev_mv: torch.Tensor | None = None
        self.since_intra = 0
        self.masks = _MaskModel()
        self.last: dict = {}  #: what the last coded frame leaves for the encoder's decisions

    def state(self) -> tuple:
        """The one-frame state (tensors are replaced, never changed in place, by :meth:`code`;
        the mask model is copied)."""
        return (self.ref_frame, self.ref_feat, self.prev_mv, self.since_intra,
                copy.deepcopy(self.masks))

    def set_state(self, st: tuple) -> None:
        self.ref_frame, self.ref_feat, self.prev_mv, self.since_intra, masks = st
        self.masks = copy.deepcopy(masks)

    def _lambda(self) -> float:
        return self.model.lmbda(torch.tensor([self.q])).item() * 255.0 ** 2

    def rd_cost(self, x: torch.Tensor, rec: torch.Tensor, nbytes: int) -> float:
        """``lambda(q) * 255^2 * MSE + bpp`` of a coded frame over the frame's own packed samples
        (the trade-off the video model was trained for)."""
        ch, cw = (self.h + 1) // 2, (self.w + 1) // 2
        mse = torch.mean((rec[..., :ch, :cw].double() - x[..., :ch, :cw].double()) ** 2).item()
        return self._lambda() * mse + bpp(nbytes, self.w * self.h)

    def copy_mask(self, x: torch.Tensor, coded: torch.Tensor, copied: torch.Tensor,
                  bits: torch.Tensor) -> torch.Tensor:
        """The blocks (1 x 1 x H/16 x W/16) worth copying from ``copied`` instead of coding
        as in ``coded`` (which cost ``bits`` per block), by the :meth:`rd_cost` trade-off;
        the padding beyond the frame is copied."""
        ch, cw = (self.h + 1) // 2, (self.w + 1) // 2
        inside = torch.zeros_like(x[:, :1], dtype=torch.float64)
        inside[..., :ch, :cw] = 1.0
        per_bit = self._lambda() / (inside.sum().item() * x.shape[1]) * self.w * self.h
        worse = _block_sse(x * inside, copied * inside) - _block_sse(x * inside, coded * inside)
        return (per_bit * worse <= _COPY_K * bits.double()).double()

    # -- frames <-> padded tensors
    def to_packed(self, frame) -> torch.Tensor:
        """A user frame -> the packed, padded float32 tensor (1 x K x Hp/2 x Wp/2) in [0, 1]."""
        from models.video import pack_frame

        ph, pw = self.hp - self.h, self.wp - self.w
        if self.fmt == "yuv420":
            y, u, v = self._check_yuv(frame)
            y = np.pad(y, ((0, ph), (0, pw)), mode="edge")
            ch, cw = self.hp // 2 - u.shape[0], self.wp // 2 - u.shape[1]
            u, v = (np.pad(c, ((0, ch), (0, cw)), mode="edge") for c in (u, v))
            t = lambda a: torch.from_numpy(a.astype(np.float32))[None, None] / 255.0  # noqa: E731
            return pack_frame((t(y), t(u), t(v)), "yuv420")
        a = self._check_rgb(frame)
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return pack_frame(torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] / 255.0, "rgb")

    def to_user(self, packed: torch.Tensor):
        """The packed 8-bit reconstruction -> the user's form, cropped."""
        from models.video import unpack_frame

        planes = unpack_frame(torch.round(packed.double() * 255.0), self.fmt)
        if self.fmt == "yuv420":
            ch, cw = (self.h + 1) // 2, (self.w + 1) // 2
            y, u, v = (p[0, 0].numpy().astype(np.uint8) for p in planes)
            return y[:self.h, :self.w].copy(), u[:ch, :cw].copy(), v[:ch, :cw].copy()
        return planes[0].permute(1, 2, 0).numpy().astype(np.uint8)[:self.h, :self.w].copy()

    def _check_yuv(self, frame):
        if not isinstance(frame, (tuple, list)) or len(frame) != 3:
            raise CodecError("a yuv420 frame is a (Y, U, V) tuple of uint8 planes")
        ch, cw = (self.h + 1) // 2, (self.w + 1) // 2
        out = []
        for p, shape in zip(frame, ((self.h, self.w), (ch, cw), (ch, cw))):
            p = np.asarray(p)
            if p.dtype != np.uint8 or p.shape != shape:
                raise CodecError(f"yuv420 planes must be uint8 of {self.h}x{self.w}, {ch}x{cw}, "
                                 f"{ch}x{cw}; got {p.dtype} {p.shape}")
            out.append(p)
        return out

    def _check_rgb(self, frame):
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.shape != (self.h, self.w, 3):
            raise CodecError(f"an rgb frame must be uint8 {self.h}x{self.w}x3, got {a.dtype} {a.shape}")
        return a

    # -- intra
    def _packed_to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        from models.video import unpack_frame

        if self.fmt == "rgb":
            return unpack_frame(x.float(), "rgb")
        return (self._rgb255(x) / 255.0).float()

    def _rgb255(self, x: torch.Tensor) -> torch.Tensor:
        """A packed 8-bit frame as RGB in [0, 255], float64 (1 x 3 x H x W): the same values
        on the encoder and the decoder (elementwise float64 arithmetic)."""
        from models.video import unpack_frame

        if self.fmt == "rgb":
            return torch.round(unpack_frame(x.double(), "rgb") * 255.0)
        y, u, v = (torch.round(p[0, 0].double() * 255).numpy().astype(np.uint8)
                   for p in unpack_frame(x, "yuv420"))
        return torch.from_numpy(yuv420_to_rgb(y, u, v)).permute(2, 0, 1)[None]

    def _rgb_to_packed(self, rgb255: torch.Tensor) -> torch.Tensor:
        from models.video import pack_frame

        if self.fmt == "rgb":
            return pack_frame(rgb255 / 255.0, "rgb")
        y, u, v = rgb_to_yuv420(rgb255[0].permute(1, 2, 0).numpy())
        t = lambda a: torch.from_numpy(a.astype(np.float64))[None, None] / 255.0  # noqa: E731
        return pack_frame((t(y), t(u), t(v)), "yuv420")

    # -- one frame
    def code(self, coder, intra: bool, refresh: bool, x: torch.Tensor | None = None,
             skip: bool = False, refine=None, copy_blocks: bool = False,
             mask: np.ndarray | None = None, replenish: bool = False,
             residual: bool = False) -> torch.Tensor:
        """Code (``x`` given, ``coder`` a RansEncoder) or decode one frame; updates the state
        and returns the packed 8-bit reconstruction (float64). ``skip``: a P frame that is its
        motion-compensated prediction; ``copy_blocks``: a block mask is coded (``mask``, H/16
        x W/16 of 0/1, when encoding), its blocks are copied from the motion-compensated
        prediction in a P frame or a ``residual`` frame (motion coded as in a skip frame, then
        the RGB residual to the prediction by the image model), from the previous decoded frame
        in a ``replenish``-ed (otherwise intra-coded) frame. After encoding, :attr:`last` holds
        what the encoder's copy decisions need: the rounded prediction (P and residual frames)
        or intra reconstruction, and the latent's estimated bits per block. ``refine``: the
        encoder's latent refinement of this frame (a :class:`models.sga.PFrameRefiner` of
        the video model for P frames, an :class:`~models.sga.ImageRefiner` of the image model
        for intra, replenished and residual frames) or None."""
        from models.video import DecodeCoder, EncodeCoder, blend_blocks

        m = self.model
        blocks = (self.hp // 16, self.wp // 16)
        with torch.no_grad():
            cm = None
            if copy_blocks or replenish:
                bits = self.masks.code(coder, int(replenish or residual), blocks,
                                       None if x is None else np.asarray(mask))
                cm = torch.from_numpy(bits.astype(np.float64))[None, None]
            if intra or replenish:
                if x is not None:
                    rgb, bits = self.intra.encode(self._packed_to_rgb(x), self.q_intra, coder, cm,
                                                  refine)
                else:
                    rgb = self.intra.decode(coder, self.hp, self.wp, self.q_intra, cm)
                frame = self._rgb_to_packed(rgb)
                if cm is not None:
                    frame = blend_blocks(cm, self._ref().double(), frame)
                if not replenish:
                    self.masks = _MaskModel()
                if x is not None:
                    self.last = {"intra": frame, "bits": bits}
                self.ref_feat = self.prev_mv = None
                self.since_intra = 0
            else:
                if cm is None:
                    self.masks.prev = None
                cod = (EncodeCoder if x is not None else DecodeCoder)(coder, self.tables, m._dt())
                q = torch.tensor([self.q])
                frame = (self._residual(coder, cod, q, x, cm, refine) if residual
                         else self._p(cod, q, x, cm, refresh, skip, refine))
                self.since_intra += 1
        self.ref_frame = frame.to(m._dt())
        return frame

    def _p(self, cod, q: torch.Tensor, x: torch.Tensor | None, cm: torch.Tensor | None,
           refresh: bool, skip: bool, refine) -> torch.Tensor:
        """A P frame, skip frame or P frame with copy blocks (see :meth:`code`; ``cod`` the
        video model's coder): its packed 8-bit reconstruction."""
        out = self.model.p_frame(cod, self.fmt, q, self._ref(), self.ref_feat, self.prev_mv,
                                 refresh, x=x, skip=skip, refine=refine, copy=cm)
        if x is not None:
            self.last = {"pred": torch.round(torch.clamp(out["pred"], 0, 1) * 255.0) / 255.0,
                         "bits": out.get("y_bits")}
        self.ref_feat, self.prev_mv = out["feat"], out["mv"]
        return torch.round(torch.clamp(out["x_hat"], 0, 1) * 255.0) / 255.0

    def _residual(self, coder, cod, q: torch.Tensor, x: torch.Tensor | None,
                  cm: torch.Tensor | None, refine=None) -> torch.Tensor:
        """A residual frame (see :meth:`code`; ``cod`` the video model's coder over ``coder``):
        its packed 8-bit reconstruction."""
        from models.video import blend_blocks

        out = self.model.p_frame(cod, self.fmt, q, self._ref(), self.ref_feat, self.prev_mv,
                                 False, x=x, skip=True)
        pred = torch.round(torch.clamp(out["x_hat"], 0, 1) * 255.0) / 255.0
        base = self._rgb255(pred)
        if x is not None:  # the residual, offset to mid-grey (larger ones are clipped)
            res = torch.clamp(self._rgb255(x) - base + 128.0, 0.0, 255.0) / 255.0
            r_hat, bits = self.intra.encode(res, self.q_res, coder, cm, refine)
            self.last = {"pred": pred, "bits": bits}
        else:
            r_hat = self.intra.decode(coder, self.hp, self.wp, self.q_res, cm)
        frame = self._rgb_to_packed(torch.clamp(base + r_hat - 128.0, 0.0, 255.0))
        if cm is not None:
            frame = blend_blocks(cm, pred, frame)
        self.ref_feat, self.prev_mv = None, out["mv"]
        return frame

    def _ref(self) -> torch.Tensor:
        if self.ref_frame is None:
            raise FormatError("a P frame without a preceding intra frame")
        return self.ref_frame

    def params(self, intra_period: int, refresh_period: int) -> dict:
        p = {"v": FORMAT_VERSION, "intra_period": int(intra_period),
             "refresh_period": int(refresh_period), "intra_model": self.intra.codec.model_id,
             "intra_digest": self.intra.digest.hex(), "residual_q": self.q_res}
        if self.fmt == "yuv420" and (self.w % 2 or self.h % 2):
            p["width"], p["height"] = self.w, self.h
        return p


# Adaptive intra decisions without coding every frame both ways: within a shot the intra cost
# of consecutive frames differs by a few per cent (the P cost does not: it swings with the
# motion), so a P frame clearly cheaper than the last intra trial needs no trial of its own.
_KEEP_P_BELOW = 0.9  # P cost / last trial's intra cost under which the P frame is kept untried
_MAX_UNTRIED = 7  # frames between trials at most
_IMAGE_KINDS = ("intra", "replenish", "residual")  # frames whose latent the image model codes


@dataclass
class _Candidate:
    """One coding of a frame the encoder weighs: its rate-distortion cost, kind, packed
    reconstruction, unit payload and checksum, and the session state it leaves."""
    cost: float
    kind: str
    rec: torch.Tensor
    payload: bytes
    checksum: int
    state: tuple
    last: dict
    x_in: torch.Tensor | None = None  #: the input it coded, when not the frame itself
    mask: np.ndarray | None = None  #: its copy-block mask

    @staticmethod
    def key(c: "_Candidate") -> float:
        return c.cost


class VideoEncoder:
    """Frame-by-frame encoder into a binary file object (see the module docstring).

    ``quality`` is continuous in ``[0, n_quality - 1]`` (0 smallest files); ``intra_period``
    N > 0 codes every N-th frame as an intra (seekable) frame, -1 only the first;
    ``refresh_period`` R > 0 rebuilds the temporal feature from the decoded frame on every
    R-th P frame after an intra frame (0 or -1: never); ``adaptive_intra`` (default on) codes
    other frames intra where that has the lower rate-distortion cost
    ``lambda(q) * 255^2 * MSE + bpp`` (encoder only: the decoder reads the frame type from the
    stream). It codes a frame both ways (a trial) unless its P coding costs under 0.9 x the
    intra cost of the last trial: then the P frame is kept untried (at least every 8th frame
    is a trial). ``skip_frames`` (default on) codes a P frame as a skip frame (its motion only;
    the frame is the motion-compensated prediction) where that has the lower cost: every P
    frame is coded both ways (the motion search and coding run twice). ``copy_blocks``
    (default on) recodes each P frame with copy blocks: the 16 x 16 blocks where
    ``lambda * (distortion increase) <= 2 x (their latent bits)`` are taken from the
    motion-compensated prediction and their latent is not coded; kept where cheaper. With
    ``adaptive_intra`` too, each intra trial is also recoded as a replenished frame: intra-coded
    blocks over a copy of the previous decoded frame (not seekable; the intra frames stay the
    seek points). With ``adaptive_intra``, ``residual_frames`` (default on) also codes a trial
    frame that the intra coding would win as a residual frame: its motion as in a skip frame,
    then the residual to the motion-compensated prediction by the image model at the intra
    frames' quality (recoded with copy blocks from the prediction too); it replaces the intra
    coding where its cost with the distortion weighted twice is lower (both restart the P-frame
    chain as its reference). ``effort`` 1 or 2
    refines each P frame's latent by stochastic Gumbel annealing (30 / 100 Adam steps through
    the contextual decoder, :class:`models.sga.PFrameRefiner`), and recodes each frame that
    the decisions (made without refinement) code by the image model, intra, replenished or
    residual, with its latent refined the same way through the image model
    (:class:`models.sga.ImageRefiner`), kept where cheaper: a slower encoder, the same
    decoder. ``threads`` sets torch's threads.
    ``weights``/``model`` and ``intra_weights``/``intra_model`` select other networks.
    ``full_range`` marks YUV planes as JPEG range (header param ``full_range``; decoders
    write that flag back, e.g. into y4m ``XCOLORRANGE=FULL``).
    """

    def __init__(self, out: BinaryIO, width: int, height: int, fmt: str = "yuv420",
                 quality: float = 1.5, intra_period: int = -1, refresh_period: int = 32,
                 fps=Fraction(30), threads: int | None = None, weights=None, model=None,
                 intra_weights=None, intra_model=None, full_range: bool = False,
                 adaptive_intra: bool = True, skip_frames: bool = True, copy_blocks: bool = True,
                 residual_frames: bool = True, effort: int = 0):
        if threads:
            torch.set_num_threads(int(threads))
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise CodecError(f"bad frame size {width}x{height}")
        if not math.isfinite(float(quality)):
            raise CodecError("quality must be a finite number")
        self._s = _Session(fmt, width, height, quality, weights, model, intra_weights, intra_model)
        if self._s.q != float(np.float32(quality)):  # the session clamps to the model's range
            raise CodecError(f"quality {quality} is out of the video model's range "
                             f"0..{self._s.model.cfg.n_quality - 1}")
        self.intra_period, self.refresh_period = int(intra_period), int(refresh_period)
        self.adaptive_intra, self.skip_frames = bool(adaptive_intra), bool(skip_frames)
        self.copy_blocks, self.residual_frames = bool(copy_blocks), bool(residual_frames)
        self._refine = self._refine_image = None
        if effort:
            from models.sga import ImageRefiner, PFrameRefiner

            from .image import _sga_schedule

            self._refine = PFrameRefiner(self._s.model, *_sga_schedule(effort))
            self._refine_image = ImageRefiner(self._s.intra.m, *_sga_schedule(effort))
        # what the last trial of the adaptive intra decision measured (see the class docstring)
        self._intra_cost, self._untried = math.inf, 0
        fps = Fraction(fps).limit_denominator(1 << 20)
        hw, hh = (width + width % 2, height + height % 2) if fmt == "yuv420" else (width, height)
        params = self._s.params(self.intra_period, self.refresh_period)
        if full_range and fmt == "yuv420":  # JPEG-range planes: recorded for display/convert
            params["full_range"] = True
        self.header = Header(StreamKind.VIDEO, hw, hh, _COLOR[fmt], 8, model_id=self._s.model_id,
                             weights_digest=self._s.digest, quality=self._s.q,
                             fps_num=fps.numerator, fps_den=fps.denominator, frame_count=0,
                             params=params)
        self._w = ContainerWriter(out, self.header)
        self.frames = 0
        self.intra_frames = 0  #: frames coded intra so far
        self.skipped_frames = 0  #: frames coded as skip frames so far
        self.copy_frames = 0  #: P frames coded with copy blocks so far
        self.replenished_frames = 0  #: frames coded as replenished (intra blocks + copies) so far
        self.residual_frames_coded = 0  #: frames coded as residual frames so far
        self.frame_bytes: list[int] = []  #: payload bytes of each coded frame
        self._closed = False

    @property
    def quality(self) -> float:
        return self._s.q

    def encode(self, frame):
        """Code one frame; returns the decoder's exact reconstruction in the input's form."""
        if self._closed:
            raise CodecError("the encoder is closed")
        s = self._s
        x = s.to_packed(frame)
        intra = s.ref_frame is None or (self.intra_period > 0 and self.frames % self.intra_period == 0)
        refresh = (not intra and self.refresh_period > 0
                   and (s.since_intra + 1) % self.refresh_period == 0)
        before = s.state()
        best = self._candidate(x, "intra" if intra else "p", refresh=refresh)
        if not intra:
            if self.copy_blocks:
                best = self._copy_trial(x, before, best, "copy", refresh)
            if self.skip_frames:
                best = min(best, self._try(x, before, "skip"), key=_Candidate.key)
            if self.adaptive_intra:
                if self._untried < _MAX_UNTRIED and best.cost < _KEEP_P_BELOW * self._intra_cost:
                    self._untried += 1
                else:  # the trial: also code it intra (and replenished), keep the cheapest
                    tried = self._trial(x, before, "intra")
                    self._intra_cost, self._untried = tried.cost, 0
                    if self.residual_frames and tried.cost < best.cost:
                        # a residual frame only where the frame would be intra otherwise, and
                        # its distortion weighs more: it is a reference like the intra frame
                        res = self._trial(x, before, "residual")
                        if self._ref_cost(res) < self._ref_cost(tried):
                            tried = res
                    best = min(best, tried, key=_Candidate.key)
        elif self.adaptive_intra:  # a forced intra frame's cost
            self._intra_cost = best.cost
        if self._refine_image is not None and best.kind in _IMAGE_KINDS:
            # only the chosen coding: refining every trial would multiply the image model's
            # share of the encoding time by up to four
            best = min(best, self._try(x, before, best.kind, x_in=best.x_in, mask=best.mask,
                                       refine_image=True), key=_Candidate.key)
        s.set_state(best.state)
        key = best.kind == "intra"
        self._w.write_unit(UnitType.KEY if key else UnitType.INTER, best.checksum, best.payload)
        self.frames += 1
        self.intra_frames += int(key)
        self.skipped_frames += int(best.kind == "skip")
        self.copy_frames += int(best.kind == "copy")
        self.replenished_frames += int(best.kind == "replenish")
        self.residual_frames_coded += int(best.kind == "residual")
        self.frame_bytes.append(len(best.payload))
        return s.to_user(best.rec)

    def _candidate(self, x, kind: str, refresh: bool = False, x_in=None, mask=None,
                   refine_image: bool = False) -> "_Candidate":
        """Code the packed frame ``x`` (or ``x_in``, a version of it with its copy blocks
        replaced) as ``kind`` from the session's current state (which it updates); P frames
        refined at ``effort`` > 0, frames of the image model with ``refine_image``."""
        s = self._s
        enc = RansEncoder()
        flag = {"intra": 0, "skip": _SKIP, "replenish": _REPLENISH, "copy": _COPY | int(refresh),
                "p": int(refresh), "residual": _RESIDUAL | (0 if mask is None else _COPY)}[kind]
        rec = s.code(enc, kind == "intra", refresh, x=x if x_in is None else x_in,
                     skip=kind == "skip",
                     refine=(self._refine_image if refine_image else None) if kind in _IMAGE_KINDS
                     else self._refine,
                     copy_blocks=kind == "copy" or (kind == "residual" and mask is not None),
                     mask=mask, replenish=kind == "replenish", residual=kind == "residual")
        payload = bytes([flag]) + enc.flush()
        return _Candidate(s.rd_cost(x, rec, len(payload)), kind, rec, payload, enc.checksum,
                          s.state(), s.last, x_in, mask)

    def _ref_cost(self, c: "_Candidate") -> float:
        """The cost with its distortion term weighted ``1 + _REF_WEIGHT``."""
        rate = bpp(len(c.payload), self._s.w * self._s.h)
        return c.cost + _REF_WEIGHT * (c.cost - rate)

    def _try(self, x, before: tuple, kind: str, **kw) -> "_Candidate":
        self._s.set_state(before)
        return self._candidate(x, kind, **kw)

    def _trial(self, x, before: tuple, kind: str) -> "_Candidate":
        """An intra or residual coding of ``x``, or its recoding with copy blocks if cheaper."""
        coded = self._try(x, before, kind)
        if not self.copy_blocks:
            return coded
        return self._copy_trial(x, before, coded, "replenish" if kind == "intra" else kind, False)

    def _copy_trial(self, x, before: tuple, coded: "_Candidate", kind: str,
                    refresh: bool) -> "_Candidate":
        """``coded`` (a P or intra coding of ``x``) against a coding with the blocks that are
        worth copying copied (``kind`` "copy" and "residual": from the prediction; "replenish":
        from the previous frame); the cheaper of the two."""
        from models.video import blend_blocks

        src = before[0].double() if kind == "replenish" else coded.last["pred"]
        mask = self._s.copy_mask(x, coded.rec, src, coded.last["bits"])
        if not mask.any():
            return coded
        x_in = blend_blocks(mask, src, x.double()).float()
        tried = self._try(x, before, kind, refresh=refresh, x_in=x_in,
                          mask=mask[0, 0].numpy().astype(np.uint8))
        return min(coded, tried, key=_Candidate.key)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._w.close()

    def __enter__(self) -> "VideoEncoder":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()


class VideoDecoder:
    """Frame-by-frame decoder of a video stream (``bytes`` or a readable binary file).

    Iterating yields the frames (the encoder's form); :meth:`seek` positions at the intra
    frame at or before a frame index (seekable inputs). ``threads`` sets torch's threads."""

    def __init__(self, src, weights=None, model=None, intra_weights=None, intra_model=None,
                 threads: int | None = None):
        if threads:
            torch.set_num_threads(int(threads))
        self._r = ContainerReader(src)
        h = self.header = self._r.header
        if h.kind != StreamKind.VIDEO:
            raise CodecError(f"not a video stream ({StreamKind(h.kind).name.lower()})")
        fmt = {v: k for k, v in _COLOR.items()}.get(ColorFormat(h.color_format))
        if fmt is None:
            raise CodecError(f"unsupported colour format {ColorFormat(h.color_format).name}")
        p = h.params
        if p.get("v") not in _VERSIONS:
            raise FormatError(f"unsupported video layout version {p.get('v')!r}")
        self._flags = {0, 1} | ({_SKIP} if p["v"] >= 2 else set()) | (
            {_COPY, _COPY | 1, _REPLENISH} if p["v"] >= 3 else set()) | (
            {_RESIDUAL, _RESIDUAL | _COPY} if p["v"] >= 4 else set())
        w, hh = int(p.get("width", h.width)), int(p.get("height", h.height))
        if not (0 < w <= h.width and 0 < hh <= h.height):
            raise FormatError("header params: bad width/height")
        self._s = _Session(fmt, w, hh, h.quality, weights, model, intra_weights, intra_model)
        if not h.digest_matches(self._s.digest):
            raise CodecError(f"the stream was made with other video model weights (model "
                             f"{h.model_id!r}, digest {h.weights_digest.hex()[:16]}...) than the "
                             f"loaded {self._s.model_id!r}")
        if p.get("intra_digest") != self._s.intra.digest.hex():
            raise CodecError(f"the stream's intra frames were made with other image model weights "
                             f"({p.get('intra_model')!r}) than the loaded "
                             f"{self._s.intra.codec.model_id!r}")
        if float(np.float32(h.quality)) != self._s.q:
            raise FormatError(f"quality {h.quality} is out of the model's range")
        if p["v"] >= 4:
            rq = p.get("residual_q")
            inq = self._s.intra.m.cfg.n_quality
            if not isinstance(rq, (int, float)) or not 0.0 <= float(rq) <= inq - 1:
                raise FormatError(f"header params: bad residual_q {rq!r}")
            self._s.q_res = float(np.float32(rq))
        self.fmt, self.width, self.height = fmt, w, hh
        self.fps = Fraction(h.fps_num, h.fps_den) if h.fps_num else None
        self.index = 0  #: index of the next frame
        self._units = None

    def seek(self, frame_index: int) -> int:
        """Go to the intra frame at or before ``frame_index``; returns its index."""
        keys = [i for i, _ in self._r.key_units() if i <= frame_index]
        if not keys:
            raise CodecError(f"no intra frame at or before frame {frame_index}")
        k = max(keys)
        self._r.seek(k)
        self._units = None
        self._s.reset()
        self.index = k
        return k

    def __iter__(self) -> Iterator:
        while True:
            f = self.read()
            if f is None:
                return
            yield f

    def read(self):
        """The next frame, or None at the end of the stream."""
        if self._units is None:
            self._units = iter(self._r)
        unit = next(self._units, None)
        if unit is None:
            return None
        s = self._s
        flag = unit.payload[0] if unit.payload else 255
        if flag not in self._flags or (unit.type == UnitType.KEY and flag):
            raise FormatError(f"frame {unit.index}: bad unit flags")
        try:
            dec = RansDecoder(unit.payload[1:])
            rec = s.code(dec, unit.type == UnitType.KEY, flag in (1, _COPY | 1),
                         skip=flag == _SKIP, copy_blocks=flag in (_COPY, _COPY | 1, _RESIDUAL | _COPY),
                         replenish=flag == _REPLENISH, residual=bool(flag & _RESIDUAL))
            dec.finish()
        except FormatError as e:
            raise FormatError(f"frame {unit.index}: {e}") from None
        except (ValueError, IndexError, RuntimeError, OverflowError) as e:
            raise FormatError(f"frame {unit.index}: corrupt data ({type(e).__name__}: {e})") from None
        if dec.checksum != unit.checksum:
            raise FormatError(f"frame {unit.index}: symbol checksum mismatch: the decoder's "
                              "probabilities differ from the encoder's (wrong model build, "
                              "desynchronized reference or corrupt data)")
        self.index = unit.index + 1
        return s.to_user(rec)
