"""The learned image codec network (MLICv2-style) with a continuous quality knob.

``x -> g_a -> y``; ``y_s = y / q_enc(q)`` (DCVC-FM's learned quantization scaler, Li et al.,
CVPR 2024, applied to images); ``z = h_a(y_s)`` coded with CompressAI's factorized
EntropyBottleneck; ``h_s(z_hat)`` (on the integer grid, see :mod:`models.layers`) feeds the
multi-reference latent codec (:mod:`models.latent_codec`); ``x_hat = g_s(y_rec * q_dec(q))``.
The quality ``q`` is continuous in ``[q_min, n_quality - 1]``: the scalers are interpolated in
the log domain between the learned per-index vectors (extrapolated below index 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck

from .entropy import factorized_tables, gaussian_tables
from .latent_codec import DecodeSlot, EncodeSlot, MultiRefLatentCodec, TrainSlot
from .layers import MetaFormerBlock, QConv2d, qrelu, subpel_conv, to_grid

__all__ = ["ImageModelConfig", "ImageModel", "QualityKnob", "CONFIGS", "LAMBDAS"]


@dataclass
class ImageModelConfig:
    n: int = 64  #: transform width
    m: int = 128  #: latent channels
    z: int = 64  #: hyper-latent channels
    hyper_ch: int = 128  #: hyperprior feature channels at the latent resolution
    slices: int = 4
    ctx_ch: int = 48
    attn_dim: int = 16
    blocks: tuple = (1, 2, 2, 2)  #: MetaFormer blocks after each of the 4 down-samplings
    widths: tuple = ()  #: transform widths at 1/2, 1/4, 1/8 (empty: n // 2, n, n)
    #: the synthesis transform's own blocks and widths (empty: those of the analysis); a
    #: larger decoder is grown and trained with the encoder fixed (``train_image --decoder-only``)
    dec_blocks: tuple = ()
    dec_widths: tuple = ()
    n_quality: int = 8
    lambdas: tuple = field(default_factory=lambda: tuple(LAMBDAS))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("blocks", "lambdas", "widths", "dec_blocks", "dec_widths"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageModelConfig":
        d = dict(d)
        for k in ("blocks", "lambdas", "widths", "dec_blocks", "dec_widths"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


#: rate-distortion trade-offs (MSE on [0,255]^2 scaled as in CompressAI) per quality index
LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800]

CONFIGS = {
    "small": ImageModelConfig(),
    "tiny": ImageModelConfig(n=16, m=32, z=16, hyper_ch=32, slices=2, ctx_ch=8, attn_dim=4,
                             blocks=(0, 1, 0, 1), n_quality=3,
                             lambdas=(0.005, 0.02, 0.08)),
    # the paper-size configuration (MLIC++ / MLICv2: N=192, M=320, 10 slices)
    "paper": ImageModelConfig(n=192, m=320, z=192, hyper_ch=640, slices=10, ctx_ch=128,
                              attn_dim=32, blocks=(1, 2, 2, 2)),
}


def _graft(new: nn.Module, old: nn.Module) -> None:
    """Copy ``old``'s own parameters into the leading slices of ``new``'s (same module kind,
    ``new`` possibly wider); a dense convolution's weights from added inputs are zeroed."""
    for name, p in new.named_parameters(recurse=False):
        o = getattr(old, name)
        p[tuple(slice(0, d) for d in o.shape)] = o
        if isinstance(new, nn.Conv2d) and name == "weight" and new.groups == 1:
            p[:o.shape[0], o.shape[1]:] = 0


class _Act(nn.Module):
    def forward(self, x):
        return qrelu(x)


class QualityKnob:
    """The continuous quality knob shared by the image and video networks (``self.cfg`` has
    ``n_quality`` and ``lambdas``): log-domain interpolation of per-index scalers and of
    the rate-distortion trade-off. Qualities from :attr:`q_min` up to index 0 extrapolate
    the first two indexes (log-linearly)."""

    cfg: Any  # an ImageModelConfig or a VideoModelConfig
    q_min: float = 0.0

    def _interp(self, table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Rows of ``table`` (log domain) interpolated at continuous ``q`` (B,)."""
        q = torch.clamp(q, self.q_min, self.cfg.n_quality - 1)
        lo = torch.clamp(torch.floor(q).long(), 0, self.cfg.n_quality - 2)
        t = (q - lo).view(-1, *[1] * (table.dim() - 1))
        return table[lo] * (1 - t) + table[lo + 1] * t

    def _scaler(self, table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """exp of the log-domain interpolation of ``table`` rows at continuous ``q`` (B,)."""
        return torch.exp(self._interp(table, q))[:, :, None, None]

    def lmbda(self, q: torch.Tensor) -> torch.Tensor:
        """Rate-distortion trade-off of continuous quality ``q`` (log-linear interpolation)."""
        lam = torch.tensor(self.cfg.lambdas, dtype=torch.float32, device=q.device)
        return torch.exp(self._interp(torch.log(lam), q))


class ImageModel(QualityKnob, nn.Module):
    # Below index 0 the knob extrapolates: with the shipped weights q -3 reaches ~0.1 bpp on
    # Kodak on a smooth continuation of the trained curve (results/image/NOTES.md).
    q_min = -3.0

    def __init__(self, cfg: ImageModelConfig | str = "small"):
        super().__init__()
        cfg = CONFIGS[cfg] if isinstance(cfg, str) else cfg
        self.cfg = cfg
        n, m = cfg.n, cfg.m
        self.widths = tuple(cfg.widths or (n // 2, n, n))
        self.dec_widths = tuple(cfg.dec_widths or self.widths)
        self.dec_blocks = tuple(cfg.dec_blocks or cfg.blocks)
        chans = [*self.widths, m]
        ga, cin = [], 3
        for i, (c, k) in enumerate(zip(chans, cfg.blocks)):
            ga.append(nn.Conv2d(cin, c, 5 if i == 0 else 3, stride=2, padding=2 if i == 0 else 1))
            if i == 0:
                ga.append(nn.GELU())
            ga += [MetaFormerBlock(c) for _ in range(k)]
            cin = c
        self.g_a = nn.Sequential(*ga)
        gs, chans = [], [*self.dec_widths, m]
        for i in reversed(range(4)):
            gs += [MetaFormerBlock(chans[i]) for _ in range(self.dec_blocks[i])]
            gs.append(subpel_conv(chans[i], chans[i - 1] if i else 3))
            if i == 1:
                gs.append(nn.GELU())
        self.g_s = nn.Sequential(*gs)
        self.h_a = nn.Sequential(
            nn.Conv2d(m, n, 3, padding=1), nn.GELU(),
            nn.Conv2d(n, n, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(n, cfg.z, 3, stride=2, padding=1))
        self.h_s = nn.Sequential(
            QConv2d(cfg.z, n, 3, padding=1), _Act(),
            subpel_conv(n, n, q=True), _Act(),
            QConv2d(n, n, 3, padding=1), _Act(),
            subpel_conv(n, cfg.hyper_ch, q=True))
        self.entropy_bottleneck = EntropyBottleneck(cfg.z)
        self.latent = MultiRefLatentCodec(m, cfg.slices, cfg.hyper_ch, cfg.ctx_ch, cfg.attn_dim)
        # learned quantization scalers (log domain), one vector per quality index
        ls = torch.linspace(np.log(4.0), np.log(0.5), cfg.n_quality)
        self.q_enc = nn.Parameter(ls.view(-1, 1).repeat(1, m).clone())
        self.q_dec = nn.Parameter(ls.view(-1, 1).repeat(1, m).clone())

    def grown(self, blocks=None, widths=None, m=None, dec_blocks=None,
              dec_widths=None) -> tuple["ImageModel", dict[str, str]]:
        """A copy with more MetaFormer blocks per stage (``blocks``), wider transform stages
        (``widths`` at 1/2, 1/4, 1/8) and/or more latent channels (``m``, in added slices of
        the same size), none fewer or narrower than now, that reconstructs the same image
        (function-preserving growth, Net2Net, Chen et al., ICLR 2016): an added block starts
        with zero layer scales, i.e. as the identity; an added channel gets fresh incoming
        weights and zero outgoing ones, so the old channels see nothing of it until training
        moves those. ``blocks`` and ``widths`` apply to both transforms unless the synthesis
        gets its own (``dec_blocks``, ``dec_widths``: a larger decoder, the encoder and the
        bitstream unchanged). Added latent channels are coded last, in added slices with fresh
        context networks (the old slices' probabilities are unchanged; the added ones cost
        rate until trained); their quantization scalers start at each quality's mean. Returns
        the copy and ``{copy's parameter name: this model's name}`` for every inherited
        parameter (possibly grown in shape)."""
        cfg = self.cfg.to_dict()
        blocks = tuple(self.cfg.blocks if blocks is None else blocks)
        widths = tuple(self.widths if widths is None else widths)
        dec_blocks = tuple(dec_blocks or (blocks if blocks != self.cfg.blocks else self.dec_blocks))
        dec_widths = tuple(dec_widths or (widths if widths != self.widths else self.dec_widths))
        m = self.cfg.m if m is None else int(m)
        cs = self.cfg.m // self.cfg.slices
        for what, b, old in (("blocks", blocks, self.cfg.blocks),
                             ("decoder blocks", dec_blocks, self.dec_blocks)):
            if len(b) != len(old) or any(x < o for x, o in zip(b, old)):
                raise ValueError(f"{what} {b}: need {len(old)} counts, none below {old}")
        for what, w, old in (("widths", widths, self.widths),
                             ("decoder widths", dec_widths, self.dec_widths)):
            if len(w) != 3 or any(x < o for x, o in zip(w, old)):
                raise ValueError(f"{what} {w}: need 3 widths, none below {old}")
        if m < self.cfg.m or m % cs:
            raise ValueError(f"latent channels {m}: need a multiple of the slice size {cs}, "
                             f"at least {self.cfg.m}")
        sym = dec_blocks == blocks and dec_widths == widths  # stored as () when symmetric
        new = ImageModel(ImageModelConfig.from_dict({
            **cfg, "blocks": list(blocks), "widths": list(widths), "m": m, "slices": m // cs,
            "dec_blocks": [] if sym else list(dec_blocks),
            "dec_widths": [] if sym else list(dec_widths)}))
        mine = self.state_dict()
        names = {n: n for n, _ in new.named_parameters()
                 if n in mine and not n.startswith(("g_a.", "g_s."))}
        pairs = []  # (new module, old module) of the transforms
        for seq in ("g_a", "g_s"):
            old = list(getattr(self, seq))
            i = 0
            for j, mod in enumerate(getattr(new, seq)):
                if isinstance(mod, MetaFormerBlock) and not (
                        i < len(old) and isinstance(old[i], MetaFormerBlock)):
                    with torch.no_grad():  # an added block
                        mod.g1.zero_()
                        mod.g2.zero_()
                    continue
                names.update({f"{seq}.{j}.{n}": f"{seq}.{i}.{n}" for n, _ in mod.named_parameters()})
                pairs.append((mod, old[i]))
                i += 1
        with torch.no_grad():
            for mod, old_mod in pairs + [(new.h_a[0], self.h_a[0])]:
                for sub, old_sub in zip(mod.modules(), old_mod.modules()):
                    _graft(sub, old_sub)
            for table, old in ((new.q_enc, self.q_enc), (new.q_dec, self.q_dec)):
                table[:] = old.mean(1, keepdim=True)
                table[:, :old.shape[1]] = old
        state = new.state_dict()
        for k in state:  # the rest: the hyper networks, the old slices' networks, buffers
            if k in mine and not k.startswith(("g_a.", "g_s.", "h_a.0.", "q_enc", "q_dec")):
                state[k] = mine[k]
        new.load_state_dict(state)
        return new, names

    # ---- the shared path -----------------------------------------------------------------
    def _hyper(self, z_hat: torch.Tensor) -> torch.Tensor:
        return to_grid(self.h_s(z_hat))

    def forward(self, x: torch.Tensor, q: torch.Tensor, noise: bool = True,
                latent_grad: bool = True) -> dict:
        """Training / evaluation pass: ``x`` in [0, 1], ``q`` (B,) continuous quality.
        ``latent_grad=False``: everything up to the reconstructed latent runs without
        gradients (training the synthesis alone, on the latents the encoder codes)."""
        with torch.set_grad_enabled(latent_grad and torch.is_grad_enabled()):
            y = self.g_a(x) / self._scaler(self.q_enc, q)
            z = self.h_a(y)
            z_hat, z_lik = self.entropy_bottleneck(z, training=noise)
            slot = TrainSlot(noise)
            _, y_rec = self.latent.run(self._hyper(z_hat), slot, y)
        x_hat = self.g_s(y_rec * self._scaler(self.q_dec, q))
        return {"x_hat": x_hat, "likelihoods": {"y": slot.likelihoods, "z": z_lik}}

    def analysis(self, x: torch.Tensor, q: float) -> torch.Tensor:
        """The scaled latent (encoder only, float)."""
        return self.g_a(x) / self._scaler(self.q_enc, torch.tensor([float(q)], device=x.device))

    # ---- coding --------------------------------------------------------------------------
    def build_tables(self):
        """(Gaussian tables, hyper-latent tables, hyper-latent medians) for the coder."""
        zt, med = factorized_tables(self.entropy_bottleneck)
        return gaussian_tables(), zt, med

    def compress_latent(self, y: torch.Tensor, encoder, tables, skip=None) -> dict:
        """Code a scaled latent ``y`` (1 x M x h x w, h and w multiples of 4) into
        ``encoder``; returns the decoder-side latent, the hyperprior features, the symbols and
        the estimated bits per position. ``skip`` (1 x 1 x h x w): positions not coded (they decode as the mean,
        :class:`~models.latent_codec.EncodeSlot`)."""
        gt, zt, med = tables
        z = self.h_a(y.float())
        medt = torch.from_numpy(med).view(1, -1, 1, 1)
        zs = torch.round(z.double() - medt)
        c = zs.shape[1]
        zidx = np.broadcast_to(np.arange(c, dtype=np.int32)[None, :, None, None], zs.shape)
        encoder.encode_indexed(zs.numpy().astype(np.int32), zidx, zt)
        z_hat = zs + medt
        slot = EncodeSlot(encoder, gt, skip)
        hyper = self._hyper(z_hat.to(self._det_dtype()))
        y_hat, y_rec = self.latent.run(hyper, slot, y.to(self._det_dtype()))
        return {"y_hat": y_hat, "y_rec": y_rec, "hyper": hyper, "z_symbols": zs,
                "symbols": slot.symbols, "bits": slot.bits}

    def decompress_latent(self, decoder, tables, h: int, w: int, skip=None) -> dict:
        """Mirror of :meth:`compress_latent` for a latent of ``h x w`` (the same ``skip``)."""
        gt, zt, med = tables
        c = self.cfg.z
        shape = (1, c, h // 4, w // 4)
        zidx = np.broadcast_to(np.arange(c, dtype=np.int32)[None, :, None, None], shape)
        zs = decoder.decode_indexed(np.ascontiguousarray(zidx), zt).reshape(shape)
        medt = torch.from_numpy(med).view(1, -1, 1, 1)
        z_hat = torch.from_numpy(zs.astype(np.float64)) + medt
        slot = DecodeSlot(decoder, gt, skip)
        hyper = self._hyper(z_hat.to(self._det_dtype()))
        y_hat, y_rec = self.latent.run(hyper, slot)
        return {"y_hat": y_hat, "y_rec": y_rec, "hyper": hyper, "symbols": slot.symbols}

    def synthesis(self, y_rec: torch.Tensor, q: float) -> torch.Tensor:
        qt = torch.tensor([float(q)], device=y_rec.device)
        return self.g_s(y_rec.float() * self._scaler(self.q_dec, qt))

    def _det_dtype(self) -> torch.dtype:
        return self.h_s[0].weight.dtype

    def deterministic(self) -> "ImageModel":
        """Put the probability path (h_s and the grid modules of the latent codec) in float64,
        where it is exact; the transforms stay float32."""
        self.h_s.double()
        for name, mod in self.latent.named_children():
            if name != "lrp":
                mod.double()
        return self
