"""The learned video codec network (DCVC-FM-style conditional coding with feature modulation).

A P frame is coded conditionally on the previous *decoded feature* (not only the frame):

* motion estimation (encoder only): coarse-to-fine block matching on luma at H/2
  (:func:`block_match`, classical, no training needed), refined by the learned MV encoder
  that also sees both frames;
* motion coding: MV latent at H/16 with a hyperprior (H/32), a temporal prior from the previous
  decoded MV latent and a two-pass checkerboard spatial context
  (:class:`~models.latent_codec.MultiRefLatentCodec`);
* motion compensation in the feature domain: the decoded flow (on a 1/8-pixel grid) warps
  the propagated feature with an exact bilinear warp (:func:`warp`);
* multi-scale temporal context mining (Sheng et al., "Temporal Context Mining", TMM 2022):
  contexts at H/2, H/4 and H/8 from the warped feature;
* contextual encoder (float, encoder only) and contextual decoder (grid) that both use the
  three contexts; the latent (H/16) is coded with hyperprior + temporal prior (from the H/8
  context) + checkerboard spatial context;
* feature modulation (Li et al., "DCVC-FM", CVPR 2024): learned quantization scalers per
  quality index (log-interpolated: continuous quality), for the frame and the MV latents;
  periodic refresh: on a refresh frame the reference feature is re-extracted from the
  decoded frame instead of taken from the propagated feature.

Frames are handled *packed* at H/2: YUV 4:2:0 as the pixel-unshuffled Y (4 channels) + U + V
(6 channels), RGB as the pixel-unshuffled R, G, B (12 channels); one network with a small
format-specific input / extraction / output layer per format.

Determinism: everything on the decoder side (MV hyper-synthesis, MV decoder, warp, context
mining, entropy parameters, contextual decoder, reconstruction head, feature extraction)
is built of :class:`~models.layers.QConv2d`, :func:`~models.layers.qrelu`, pixel shuffles
and the exact warp; in float64 (:meth:`VideoModel.deterministic`) it is exact, hence
identical on any thread count. The decoded frame is rounded to 8 bits and fed back exactly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck

from .entropy import factorized_tables, gaussian_tables
from .image import QualityKnob
from .latent_codec import DecodeSlot, EncodeSlot, MultiRefLatentCodec, TrainSlot
from .layers import QConv2d, qrelu, round_ste, subpel_conv, to_grid

__all__ = ["VideoModelConfig", "VideoModel", "CONFIGS", "FORMATS", "block_match", "warp",
           "pack_frame", "unpack_frame", "luma", "blend_blocks"]

#: packed channels (at H/2) of each frame format
FORMATS = {"yuv420": 6, "rgb": 12}
FLOW_FRAC = 8  #: the decoded flow lies on a 1/8-pixel grid (at H/2)
FLOW_GAIN = 4.0  #: the MV decoder's output is multiplied by this (a power of two: exact)
PAD = 64  #: frame sizes are padded to a multiple of this
ENC_GAIN = 16.0  #: constant gain of the contextual encoder's output (encoder side only)


@dataclass
class VideoModelConfig:
    c: int = 32  #: feature channels at H/2
    c2: int = 48  #: context channels at H/4
    c3: int = 64  #: context channels at H/8
    m: int = 96  #: latent channels (H/16)
    z: int = 64  #: hyper-latent channels (H/32)
    hyper: int = 64  #: hyperprior feature channels
    tp: int = 64  #: temporal prior channels
    mv_m: int = 64  #: MV latent channels (H/16)
    mv_z: int = 32
    mv_hyper: int = 48
    mv_tp: int = 32
    mv_n: int = 48  #: MV transform width
    slices: int = 2
    ctx_ch: int = 32
    attn_dim: int = 8
    n_quality: int = 4
    lambdas: tuple = field(default_factory=lambda: (0.0018, 0.0084, 0.0388, 0.18))
    #: residual blocks in the contextual decoder at H/8, H/4, H/2 (added blocks start as the
    #: identity, so a trained model grows function-preserving: ``train_video
    #: --grow-decoder-blocks``)
    dec_blocks: tuple = (0, 0, 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"], d["dec_blocks"] = list(self.lambdas), list(self.dec_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VideoModelConfig":
        d = dict(d)
        d["lambdas"] = tuple(d["lambdas"])
        d["dec_blocks"] = tuple(d.get("dec_blocks", (0, 0, 0)))
        return cls(**d)


CONFIGS = {
    "small": VideoModelConfig(),
    "tiny": VideoModelConfig(c=8, c2=8, c3=8, m=16, z=8, hyper=8, tp=8, mv_m=8, mv_z=8,
                             mv_hyper=8, mv_tp=8, mv_n=8, slices=1, ctx_ch=8, attn_dim=4),
}


# ---- frames ----------------------------------------------------------------------------
def pack_frame(planes, fmt: str) -> torch.Tensor:
    """``yuv420``: (Y B1HW, U, V B1(H/2)(W/2)) -> B6(H/2)(W/2); ``rgb``: B3HW -> B12(H/2)(W/2)."""
    if fmt == "yuv420":
        y, u, v = planes
        return torch.cat([F.pixel_unshuffle(y, 2), u, v], 1)
    return F.pixel_unshuffle(planes, 2)


def unpack_frame(x: torch.Tensor, fmt: str):
    if fmt == "yuv420":
        return F.pixel_shuffle(x[:, :4], 2), x[:, 4:5], x[:, 5:6]
    return F.pixel_shuffle(x, 2)


def luma(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """The four luma phases (B4(H/2)(W/2)) of a packed frame (RGB: BT.601 weights)."""
    if fmt == "yuv420":
        return x[:, :4]
    return 0.299 * x[:, 0:4] + 0.587 * x[:, 4:8] + 0.114 * x[:, 8:12]


# ---- motion ----------------------------------------------------------------------------
def warp(feat: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear backward warp ``out(p) = feat(p + flow(p))`` with border replication.

    The flow is expected on a dyadic grid (1/8 px): floor indices, a gather and the four
    dyadic weights give products and sums that are exact in float64 for grid features, so
    encoder and decoder agree bit for bit (``F.grid_sample`` normalizes coordinates to
    [-1, 1] and back, which rounds). Gradients flow to ``feat`` and to ``flow``."""
    b, c, h, w = feat.shape
    gx = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w) + flow[:, 0]
    gy = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1) + flow[:, 1]
    x0, y0 = torch.floor(gx).detach(), torch.floor(gy).detach()
    wx, wy = (gx - x0).unsqueeze(1), (gy - y0).unsqueeze(1)
    x0, y0 = x0.long(), y0.long()
    flat = feat.reshape(b, c, h * w)

    def tap(yy, xx):
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(b, 1, h * w).expand(b, c, h * w)
        return flat.gather(2, idx).view(b, c, h, w)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


@torch.no_grad()
def block_match(cur: torch.Tensor, ref: torch.Tensor, levels: int = 3, block: int = 4,
                radius: int = 3, penalty: float = 0.002) -> torch.Tensor:
    """Classical coarse-to-fine block matching (encoder side only).

    ``cur``, ``ref``: B1HW luma. Full search of +-``radius`` at the coarsest pyramid level,
    +-1 refinement at each finer level, then a half-pixel refinement; SAD over ``block``
    x ``block`` blocks plus a small motion-length penalty (prefers zero motion in flat
    areas). Returns a B2HW flow (per block, in pixels of ``cur``)."""
    cur, ref = cur.float(), ref.float()
    pyr = [(cur, ref)]
    for _ in range(levels - 1):
        pyr.append((F.avg_pool2d(pyr[-1][0], 2), F.avg_pool2d(pyr[-1][1], 2)))
    flow = None

    def window(rad, step=1.0):  # offsets, shortest first (ties keep the shortest)
        d = [(dy * step, dx * step) for dy in range(-rad, rad + 1) for dx in range(-rad, rad + 1)]
        return sorted(d, key=lambda t: abs(t[0]) + abs(t[1]))

    def search(c, r, cands):  # all candidates of a level in one batched warp
        b, _, h, w = c.shape
        flows = torch.stack([base + torch.tensor([dx, dy], dtype=c.dtype, device=c.device).view(1, 2, 1, 1)
                             for base, deltas in cands for dy, dx in deltas])  # K B 2 h/bk w/bk
        k = flows.shape[0]
        full = flows.repeat_interleave(block, 3).repeat_interleave(block, 4).reshape(k * b, 2, h, w)
        diff = (c.repeat(k, 1, 1, 1) - warp(r.repeat(k, 1, 1, 1), full)).abs()
        cost = diff.reshape(k, b, h // block, block, w // block, block).mean((3, 5))
        cost = cost + penalty * flows.abs().sum(2)  # K B h/bk w/bk
        best = torch.argmin(cost, 0)  # first minimum: the earliest (shortest) candidate
        return torch.gather(flows, 0, best[None, :, None].expand(1, b, 2, *best.shape[1:]))[0]

    for lvl in reversed(range(levels)):
        c, r = pyr[lvl]
        zero = c.new_zeros(c.shape[0], 2, c.shape[2] // block, c.shape[3] // block)
        if flow is None:  # coarsest: full search
            flow = search(c, r, [(zero, window(radius))])
        else:  # refine the up-sampled flow; small motion is also searched from zero
            up = F.interpolate(flow, scale_factor=2, mode="nearest") * 2
            flow = search(c, r, [(zero, window(1)), (up, window(1))])
    flow = search(cur, ref, [(flow, window(1, 0.5))])  # half-pixel refinement
    return F.interpolate(flow, scale_factor=block, mode="nearest")


# ---- modules ---------------------------------------------------------------------------
class _Act(nn.Module):
    def forward(self, x):
        return qrelu(x)


def _qconv(cin, cout, stride=1, k=3):
    return QConv2d(cin, cout, k, stride=stride, padding=k // 2)


def _latent_codec(m, slices, hyper_ch, ctx_ch, attn_dim) -> MultiRefLatentCodec:
    lc = MultiRefLatentCodec(m, slices, hyper_ch, ctx_ch, attn_dim)
    lc.lrp = None  # no latent residual prediction: the decoder side stays on the grid
    return lc


class _Contexts(nn.Module):
    """Multi-scale temporal contexts (H/2, H/4, H/8) from the warped reference feature."""

    def __init__(self, c, c2, c3):
        super().__init__()
        self.a1, self.b1 = _qconv(c, c), _qconv(c, c)
        self.a2, self.b2 = _qconv(c, c2, 2), _qconv(c2, c2)
        self.a3, self.b3 = _qconv(c2, c3, 2), _qconv(c3, c3)

    def forward(self, fw):
        f1 = qrelu(self.a1(fw))
        f2 = qrelu(self.a2(f1))
        f3 = qrelu(self.a3(f2))
        return to_grid(self.b1(f1)), to_grid(self.b2(f2)), to_grid(self.b3(f3))


class _ContextEncoder(nn.Module):
    """Contextual encoder (float, encoder side only): frame feature + contexts -> latent."""

    def __init__(self, c, c2, c3, m):
        super().__init__()
        self.e0 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.e1 = nn.Conv2d(2 * c, c2, 3, stride=2, padding=1)
        self.e2 = nn.Conv2d(2 * c2, c3, 3, stride=2, padding=1)
        self.e3 = nn.Conv2d(2 * c3, m, 3, stride=2, padding=1)
        self.r3 = nn.Sequential(nn.GELU(), nn.Conv2d(m, m, 3, padding=1))

    def forward(self, f, c1, c2, c3):
        h = F.gelu(self.e0(torch.cat([f, c1], 1)))
        h = F.gelu(self.e1(torch.cat([h, c1], 1)))
        h = F.gelu(self.e2(torch.cat([h, c2], 1)))
        h = self.e3(torch.cat([h, c3], 1))
        return h + self.r3(h)


class _ResBlock(nn.Module):
    """``h + conv(qrelu(conv(h)))`` on the grid. The second convolution starts at zero, so an
    added block starts as the identity (the next :class:`QConv2d` grids its input anyway)."""

    def __init__(self, ch):
        super().__init__()
        self.a, self.b = _qconv(ch, ch), _qconv(ch, ch)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, h):
        return to_grid(h + self.b(qrelu(self.a(h))))


class _ContextDecoder(nn.Module):
    """Contextual decoder (grid): latent + contexts -> the propagated feature at H/2, with
    ``blocks`` residual blocks after the H/8, H/4 and H/2 stages."""

    def __init__(self, c, c2, c3, m, blocks=(0, 0, 0)):
        super().__init__()
        self.u3, self.d3 = subpel_conv(m, c3, q=True), _qconv(2 * c3, c3)
        self.u2, self.d2 = subpel_conv(c3, c2, q=True), _qconv(2 * c2, c2)
        self.u1, self.d1 = subpel_conv(c2, c, q=True), _qconv(2 * c, c)
        self.d0 = _qconv(c, c)
        self.r3, self.r2, self.r1 = (nn.Sequential(*(_ResBlock(ch) for _ in range(n)))
                                     for ch, n in zip((c3, c2, c), blocks))

    def forward(self, y, c1, c2, c3):
        h = self.r3(qrelu(self.d3(torch.cat([qrelu(self.u3(y)), c3], 1))))
        h = self.r2(qrelu(self.d2(torch.cat([qrelu(self.u2(h)), c2], 1))))
        h = self.r1(qrelu(self.d1(torch.cat([qrelu(self.u1(h)), c1], 1))))
        return to_grid(self.d0(h))


# ---- coders: one code path for training, encoding and decoding -------------------------
class TrainCoder:
    """Training: noisy / straight-through quantization, likelihoods collected."""

    def __init__(self, noise: bool = True):
        self.noise = noise
        self.likelihoods: dict[str, list] = {"mv": [], "y": []}

    def slot(self, key, skip=None):
        if skip is not None:
            raise ValueError("training codes every latent position (no copy blocks)")
        s = TrainSlot(self.noise)
        s.lrp = False
        self.likelihoods[key].append(s.likelihoods)
        return s

    def hyper(self, key, eb, z, shape):
        z_hat, lik = eb(z, training=self.noise)
        self.likelihoods[key].append([lik])
        return z_hat

    def bits(self) -> dict:
        """Per-sample bits of the MV and of the frame latent."""
        return {k: sum((-torch.log2(l)).sum((1, 2, 3)) for ls in v for l in ls)
                for k, v in self.likelihoods.items()}


class _RansCoder:
    def __init__(self, coder, tables: dict, dtype):
        self.coder, self.tables, self.dtype = coder, tables, dtype
        self.symbols = []

    def _zidx(self, shape):
        return np.ascontiguousarray(np.broadcast_to(
            np.arange(shape[1], dtype=np.int32)[None, :, None, None], shape))


class EncodeCoder(_RansCoder):
    def slot(self, key, skip=None):
        s = EncodeSlot(self.coder, self.tables["gauss"], skip)
        s.lrp = False
        self.symbols.append(s.symbols)
        return s

    def hyper(self, key, eb, z, shape):
        zt, med = self.tables[key]
        medt = torch.from_numpy(med).view(1, -1, 1, 1)
        zs = torch.round(z.double() - medt)
        self.coder.encode_indexed(zs.numpy().astype(np.int32), self._zidx(zs.shape), zt)
        return (zs + medt).to(self.dtype)


class DecodeCoder(_RansCoder):
    def slot(self, key, skip=None):
        s = DecodeSlot(self.coder, self.tables["gauss"], skip)
        s.lrp = False
        return s

    def hyper(self, key, eb, z, shape):
        zt, med = self.tables[key]
        zs = self.coder.decode_indexed(self._zidx(shape), zt).reshape(shape)
        medt = torch.from_numpy(med).view(1, -1, 1, 1)
        return (torch.from_numpy(zs.astype(np.float64)) + medt).to(self.dtype)


# ---- the network -----------------------------------------------------------------------
class VideoModel(QualityKnob, nn.Module):
    def __init__(self, cfg: VideoModelConfig | str = "small"):
        super().__init__()
        cfg = CONFIGS[cfg] if isinstance(cfg, str) else cfg
        self.cfg = cfg
        c, c2, c3, m, mn = cfg.c, cfg.c2, cfg.c3, cfg.m, cfg.mv_n
        # format-specific layers
        self.enc_in = nn.ModuleDict({f: nn.Conv2d(k, c, 3, padding=1) for f, k in FORMATS.items()})
        # the encoder also sees the residual to the motion-compensated prediction (a hint that
        # only the encoder has; the decoder is purely conditional on the temporal contexts)
        self.enc_res = nn.ModuleDict({f: nn.Conv2d(k, c, 3, padding=1) for f, k in FORMATS.items()})
        self.extract = nn.ModuleDict({f: nn.Sequential(_qconv(k, c), _Act(), _qconv(c, c))
                                      for f, k in FORMATS.items()})
        self.head = nn.ModuleDict({f: _qconv(c, k) for f, k in FORMATS.items()})
        for hd in self.head.values():  # start as "the motion-compensated prediction"
            nn.init.normal_(hd.weight, 0.0, 0.01)
            nn.init.zeros_(hd.bias)
        # motion
        self.mv_enc = nn.Sequential(
            nn.Conv2d(2 + 8, mn, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(mn, mn, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(mn, cfg.mv_m, 3, stride=2, padding=1))
        self.mv_ha = nn.Sequential(
            nn.Conv2d(cfg.mv_m, mn, 3, padding=1), nn.GELU(),
            nn.Conv2d(mn, cfg.mv_z, 3, stride=2, padding=1))
        self.mv_hs = nn.Sequential(_qconv(cfg.mv_z, mn), _Act(), subpel_conv(mn, mn, q=True), _Act(),
                                   _qconv(mn, cfg.mv_hyper))
        self.mv_tp = nn.Sequential(_qconv(cfg.mv_m, cfg.mv_tp), _Act(), _qconv(cfg.mv_tp, cfg.mv_tp))
        self.mv_eb = EntropyBottleneck(cfg.mv_z)
        self.mv_latent = _latent_codec(cfg.mv_m, 1, cfg.mv_hyper + cfg.mv_tp, cfg.ctx_ch // 2,
                                       cfg.attn_dim)
        self.mv_dec = nn.Sequential(subpel_conv(cfg.mv_m, mn, q=True), _Act(),
                                    subpel_conv(mn, mn // 2, q=True), _Act(),
                                    subpel_conv(mn // 2, 2, q=True))
        # contexts, contextual coding
        self.ctx = _Contexts(c, c2, c3)
        self.ctx_enc = _ContextEncoder(c, c2, c3, m)
        self.h_a = nn.Sequential(
            nn.Conv2d(m, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, cfg.z, 3, stride=2, padding=1))
        self.h_s = nn.Sequential(_qconv(cfg.z, cfg.hyper), _Act(),
                                 subpel_conv(cfg.hyper, cfg.hyper, q=True), _Act(),
                                 _qconv(cfg.hyper, cfg.hyper))
        self.tp = nn.Sequential(_qconv(c3, cfg.tp, 2), _Act(), _qconv(cfg.tp, cfg.tp))
        self.eb = EntropyBottleneck(cfg.z)
        self.latent = _latent_codec(m, cfg.slices, cfg.hyper + cfg.tp, cfg.ctx_ch, cfg.attn_dim)
        self.ctx_dec = _ContextDecoder(c, c2, c3, m, cfg.dec_blocks)
        # learned quantization scalers (log domain), one vector per quality index
        ls = torch.linspace(np.log(4.0), np.log(0.5), cfg.n_quality)
        self.q_enc = nn.Parameter(ls.view(-1, 1).repeat(1, m).clone())
        self.q_dec = nn.Parameter(ls.view(-1, 1).repeat(1, m).clone())
        ms = torch.linspace(np.log(2.0), np.log(0.5), cfg.n_quality)
        self.q_mv_enc = nn.Parameter(ms.view(-1, 1).repeat(1, cfg.mv_m).clone())
        self.q_mv_dec = nn.Parameter(ms.view(-1, 1).repeat(1, cfg.mv_m).clone())

    #: modules that run on the encoder side only (float; never decide a probability)
    ENCODER_ONLY = ("enc_in", "enc_res", "mv_enc", "mv_ha", "ctx_enc", "h_a")

    def _dt(self) -> torch.dtype:
        return self.h_s[0].weight.dtype

    def deterministic(self) -> "VideoModel":
        """Decoder-side modules in float64 (exact on the grid); encoder-side ones stay float32."""
        for name, mod in self.named_children():
            if name not in self.ENCODER_ONLY and name not in ("eb", "mv_eb"):
                mod.double()
        return self

    def build_tables(self) -> dict:
        zt, zm = factorized_tables(self.eb)
        mt, mm = factorized_tables(self.mv_eb)
        return {"gauss": gaussian_tables(), "y": (zt, zm), "mv": (mt, mm)}

    def _q(self, table, q):
        return self._scaler(table, q).to(self._dt())

    def extract_feature(self, frame: torch.Tensor, fmt: str) -> torch.Tensor:
        """Reference feature re-extracted from a decoded frame (after intra, and at refresh)."""
        return to_grid(self.extract[fmt](frame.to(self._dt())))

    def reconstruct(self, feat: torch.Tensor, fmt: str, pred: torch.Tensor) -> torch.Tensor:
        """The frame: the head's output on top of the motion-compensated prediction ``pred``
        (the warped previous frame). Elementwise float64 operations in a fixed order:
        reproducible bit for bit."""
        return self.head[fmt](feat) + pred

    def p_frame(self, coder, fmt: str, q: torch.Tensor, ref_frame: torch.Tensor,
                ref_feat: torch.Tensor | None, prev_mv: torch.Tensor | None, refresh: bool,
                x: torch.Tensor | None = None, flow: torch.Tensor | None = None,
                skip: bool = False, refine=None, copy: torch.Tensor | None = None) -> dict:
        """Code one P frame; the one code path of training (``TrainCoder``), encoding
        (``EncodeCoder``, ``x`` given) and decoding (``DecodeCoder``, ``x`` None).

        ``ref_frame``: the previous decoded packed frame; ``ref_feat``: the propagated
        feature (None after an intra frame); ``prev_mv``: the previous decoded MV latent
        (None: zeros); ``refresh``: rebuild the reference feature from ``ref_frame``;
        ``skip``: a skip frame, only the motion is coded and the frame is the motion-compensated
        prediction itself (its feature is None: the next P frame extracts one from it);
        ``copy`` (1 x 1 x H/16 x W/16, 1 = copy): copy blocks of 16 x 16 pixels, whose frame
        latent is not coded (it decodes as the entropy model's mean) and whose pixels are the
        motion-compensated prediction.
        Returns the packed reconstruction ``x_hat`` (unrounded), the propagated feature,
        the decoded MV latent and flow, the prediction and the frame latent's estimated bits
        per position (``y_bits``, encoding only)."""
        dt = self._dt()
        b, _, h2, w2 = ref_frame.shape
        h16, w16 = h2 // 8, w2 // 8
        # ---- motion
        mv_y = None
        if x is not None:
            if flow is None:
                flow = block_match(luma(x, fmt).mean(1, True), luma(ref_frame, fmt).mean(1, True))
            xf, rf = x.float(), ref_frame.float()
            mv_in = torch.cat([flow.float() / FLOW_FRAC, luma(xf, fmt), luma(rf, fmt)], 1)
            mv_y = self.mv_enc(mv_in) / self._scaler(self.q_mv_enc, q).float()
            mv_z = self.mv_ha(mv_y)
        else:
            mv_z = None
        mv_zhat = coder.hyper("mv", self.mv_eb, mv_z, (b, self.cfg.mv_z, h16 // 2, w16 // 2))
        if prev_mv is None:
            prev_mv = torch.zeros(b, self.cfg.mv_m, h16, w16, dtype=dt, device=ref_frame.device)
        mv_ctx = torch.cat([to_grid(self.mv_hs(mv_zhat.to(dt))), to_grid(self.mv_tp(prev_mv.to(dt)))], 1)
        mv_hat, _ = self.mv_latent.run(mv_ctx, coder.slot("mv"), None if mv_y is None else mv_y.to(dt))
        flow_hat = self.mv_dec(mv_hat * self._q(self.q_mv_dec, q)) * FLOW_GAIN
        flow_hat = round_ste(torch.clamp(flow_hat, -512, 512) * FLOW_FRAC) / FLOW_FRAC
        pred = warp(ref_frame.to(dt), flow_hat)
        if skip:
            return {"x_hat": pred, "feat": None, "mv": mv_hat, "flow": flow_hat, "pred": pred}
        # ---- temporal contexts
        ref = self.extract_feature(ref_frame, fmt) if (refresh or ref_feat is None) else ref_feat
        fw = warp(ref.to(dt), flow_hat)
        c1, c2, c3 = self.ctx(fw)
        # ---- contextual coding
        y = None
        if x is not None:
            f = self.enc_in[fmt](x.float()) + self.enc_res[fmt]((x.to(dt) - pred).float())
            y = (self.ctx_enc(f, c1.float(), c2.float(), c3.float()) * ENC_GAIN
                 / self._scaler(self.q_enc, q).float())
            z = self.h_a(y)
        else:
            z = None
        z_hat = coder.hyper("y", self.eb, z, (b, self.cfg.z, h16 // 2, w16 // 2))
        ctx = torch.cat([to_grid(self.h_s(z_hat.to(dt))), to_grid(self.tp(c3))], 1)
        if y is not None and refine is not None:
            y = refine(x, y, ctx, (c1, c2, c3), pred, q, fmt)
        slot = coder.slot("y", copy)
        _, feat, x_hat = self.synthesize(ctx, slot, None if y is None else y.to(dt),
                                         c1, c2, c3, q, fmt, pred)
        if copy is not None:
            x_hat = blend_blocks(copy, pred, x_hat)
        return {"x_hat": x_hat, "feat": feat, "mv": mv_hat, "flow": flow_hat, "pred": pred,
                "y_bits": getattr(slot, "bits", None)}

    def synthesize(self, ctx, slot, y, c1, c2, c3, q, fmt: str, pred) -> tuple:
        """The frame latent through ``slot`` (entropy parameters from ``ctx``) and the
        contextual decoder: ``(y_hat, feature, reconstruction)``."""
        y_hat, _ = self.latent.run(ctx, slot, y)
        feat = self.ctx_dec(y_hat * self._q(self.q_dec, q), c1, c2, c3)
        return y_hat, feat, self.reconstruct(feat, fmt, pred)


def blend_blocks(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where the block ``mask`` (one value per 8 x 8 packed samples = 16 x 16 pixels) is
    1, ``b`` elsewhere (an exact selection)."""
    up = F.interpolate(mask.to(a.dtype), scale_factor=8, mode="nearest").bool()
    return torch.where(up, a, b)


def round_frame(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits (straight-through gradient)."""
    return round_ste(torch.clamp(x, 0, 1) * 255.0) / 255.0
