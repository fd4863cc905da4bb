"""The multi-reference latent codec (MLIC++ / MLICv2 entropy model) with pluggable slots.

One function, :meth:`MultiRefLatentCodec.run`, walks the coding order -- channel slices, and
within each slice two checkerboard passes (He et al., CVPR 2021) -- and builds every pass's
entropy parameters from the contexts available at that point. What happens to a pass's
symbols is the job of a *slot* (cf. CompressAI's ``latent_codecs``): :class:`TrainSlot`
quantizes with a straight-through rounding and returns likelihoods, :class:`EncodeSlot`
computes symbols and table indexes and feeds the rANS encoder, :class:`DecodeSlot` reads them
back. Training, compression and decompression therefore share the parameter path.

Contexts of slice ``s``, pass ``p`` (MLIC++, Jiang et al. 2023; MLICv2, Jiang et al. 2025):

* hyperprior features (Ballé et al. 2018) -- always;
* channel context from the decoded slices ``< s`` (Minnen & Singh, ICIP 2020);
* global inter-slice context: linear attention over the decoded slices ``< s``;
* local spatial context: a checkerboard convolution over this slice's anchors (pass 1);
* global intra-slice context: linear attention whose keys/values are this slice's anchors,
  with queries/keys guided by the previous slices, or by the hyperprior for slice 0 (pass 1);
* a positional embedding of the coding position (slice, pass), channel reweighting of the
  concatenated contexts, and latent residual prediction after each slice (float path: it only
  shapes the reconstruction, never a probability).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .entropy import gaussian_likelihood, scale_table_index
from .layers import ChannelReweight, GridLinearAttention, QConv2d, qrelu, round_ste, to_grid

__all__ = ["MultiRefLatentCodec", "TrainSlot", "EncodeSlot", "DecodeSlot", "checkerboard"]


def checkerboard(h: int, w: int, anchor: bool, like: torch.Tensor) -> torch.Tensor:
    """1 x 1 x h x w mask: anchors where (row + col) is even."""
    dev = like.device
    i = torch.arange(h, device=dev).view(-1, 1) + torch.arange(w, device=dev).view(1, -1)
    m = (i % 2 == 0) if anchor else (i % 2 == 1)
    return m.to(like.dtype).view(1, 1, h, w)


class _ParamNet(nn.Module):
    """Entropy parameter network of one slice: reweighted contexts -> (mean, log scale)."""

    def __init__(self, cin: int, cs: int, hidden: int, n_pass: int = 2):
        super().__init__()
        self.rw = ChannelReweight(cin, max(16, cin // 8))
        self.l1 = QConv2d(cin, hidden, 1)
        self.pos = nn.Parameter(torch.zeros(n_pass, hidden, 1, 1))  # coding-position embedding
        self.l2 = QConv2d(hidden, hidden, 1)
        self.l3 = QConv2d(hidden, 2 * cs, 1)

    def forward(self, ctx: torch.Tensor, p: int):
        h = qrelu(self.l1(self.rw(ctx)) + to_grid(self.pos[p]))
        h = qrelu(self.l2(h))
        mean, log_scale = self.l3(h).chunk(2, 1)
        return to_grid(mean), to_grid(log_scale)


class MultiRefLatentCodec(nn.Module):
    def __init__(self, m: int, slices: int, hyper_ch: int, ctx_ch: int = 64, attn_dim: int = 16,
                 hidden: int | None = None):
        super().__init__()
        if m % slices:
            raise ValueError("M must be divisible by the slice count")
        self.m, self.slices, self.cs = m, slices, m // slices
        cs, c = self.cs, ctx_ch
        hidden = hidden or max(2 * c, 2 * cs)
        self.channel = nn.ModuleList([None] + [
            nn.Sequential(QConv2d(s * cs, c, 3, padding=1), _QAct(), QConv2d(c, c, 3, padding=1))
            for s in range(1, slices)])
        self.inter = nn.ModuleList([None] + [
            GridLinearAttention(s * cs, s * cs, c, attn_dim) for s in range(1, slices)])
        self.local = nn.ModuleList([QConv2d(cs, c, 5, padding=2) for _ in range(slices)])
        self.intra = nn.ModuleList([
            GridLinearAttention(hyper_ch if s == 0 else s * cs, hyper_ch if s == 0 else s * cs,
                                c, attn_dim, cv=cs) for s in range(slices)])
        cin = hyper_ch + 4 * c
        self.param = nn.ModuleList([_ParamNet(cin, cs, hidden) for _ in range(slices)])
        self.lrp = nn.ModuleList([
            nn.Sequential(nn.Conv2d(hyper_ch + (s + 1) * cs, c, 3, padding=1), nn.GELU(),
                          nn.Conv2d(c, cs, 3, padding=1)) for s in range(slices)])

    def run(self, hyper: torch.Tensor, slot, y: torch.Tensor | None = None):
        """Code the latent ``y`` (None when decoding) given hyperprior features ``hyper``.
        Returns ``(y_hat, y_rec)``: the decoded latent and the latent after residual
        prediction, which the synthesis transform consumes."""
        b, _, h, w = hyper.shape
        hyper = to_grid(hyper)
        anchor = checkerboard(h, w, True, hyper)
        non_anchor = 1.0 - anchor
        zeros = hyper.new_zeros(b, self.local[0].out_channels, h, w)
        decoded, recs = [], []
        for s in range(self.slices):
            ys = None if y is None else y[:, s * self.cs:(s + 1) * self.cs]
            prev = torch.cat(decoded, 1) if s else None
            if s:
                cc = self.channel[s](prev)
                inter = self.inter[s](prev, prev)
            else:
                cc = inter = zeros
            # pass 0: anchors
            mean, log_scale = self.param[s](torch.cat([hyper, cc, inter, zeros, zeros], 1), 0)
            y_anchor = slot.code(s, 0, ys, mean, log_scale, anchor)
            # pass 1: non-anchors, with the spatial and intra-slice contexts of the anchors
            local = self.local[s](y_anchor)
            guide = hyper if s == 0 else prev
            intra = self.intra[s](guide, guide, mask=anchor, v_src=y_anchor)
            mean, log_scale = self.param[s](torch.cat([hyper, cc, inter, local, intra], 1), 1)
            y_non = slot.code(s, 1, ys, mean, log_scale, non_anchor)
            y_hat_s = y_anchor + y_non
            decoded.append(y_hat_s)
            lrp_in = torch.cat([hyper.to(torch.float32), *(d.to(torch.float32) for d in decoded)], 1)
            lrp = 0.5 * torch.tanh(self.lrp[s].to(torch.float32)(lrp_in)) if slot.lrp else 0.0
            recs.append(y_hat_s.to(torch.float32) + lrp)
        return torch.cat(decoded, 1), torch.cat(recs, 1)


class _QAct(nn.Module):
    def forward(self, x):
        return qrelu(x)


class TrainSlot:
    """Training: likelihoods from additive-noise proxies, reconstruction and contexts from
    straight-through rounding around the mean (mixed quantization, Minnen & Singh 2020)."""

    lrp = True

    def __init__(self, noise: bool = True):
        self.noise = noise
        self.likelihoods: list[torch.Tensor] = []

    def code(self, s, p, y, mean, log_scale, mask):
        y_hat = (round_ste(y - mean) + mean) * mask
        y_tilde = y + (torch.rand_like(y) - 0.5) if self.noise else y_hat + (1 - mask) * y
        lik = gaussian_likelihood(y_tilde, mean, log_scale)
        self.likelihoods.append(torch.where(mask.bool().expand_as(lik), lik, torch.ones_like(lik)))
        return y_hat


def _select(t: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Values of ``t`` (B x C x H x W) at mask positions, in C order, as float64 numpy."""
    m = mask.bool().expand_as(t)
    return t.detach()[m].double().numpy()


class EncodeSlot:
    """Compression: symbols ``round(y - mean)`` and table indexes go to a RansEncoder.

    ``skip`` (1 x 1 x h x w, 1 = skipped; optional): positions whose symbols are not coded
    at all and decode as the mean (the decoder is given the same mask). ``bits`` holds the
    estimated bits of the coded symbols per position (1 x 1 x h x w, summed over channels),
    for the encoder's mode decisions."""

    lrp = True

    def __init__(self, encoder, tables, skip: torch.Tensor | None = None):
        self.enc, self.tables, self.skip = encoder, tables, skip
        self.symbols = []
        self.bits: torch.Tensor | float = 0.0

    def code(self, s, p, y, mean, log_scale, mask):
        coded = _coded(mask, self.skip)
        sym = np.round(_select(y, coded) - _select(mean, coded)).astype(np.int32)
        idx = scale_table_index(_select(log_scale, coded))
        self.enc.encode_indexed(sym, idx, self.tables)
        self.symbols.append(sym)
        out = torch.zeros_like(mean)
        out[coded.bool().expand_as(y)] = torch.from_numpy(sym.astype(np.float64)).to(mean.dtype)
        lik = gaussian_likelihood(out + mean, mean, log_scale)
        self.bits = self.bits + (-torch.log2(lik) * coded).sum(1, keepdim=True)
        return (out + mean) * mask


class DecodeSlot:
    """Decompression: the mirror of :class:`EncodeSlot` (given the same ``skip`` mask)."""

    lrp = True

    def __init__(self, decoder, tables, skip: torch.Tensor | None = None):
        self.dec, self.tables, self.skip = decoder, tables, skip
        self.symbols = []

    def code(self, s, p, y, mean, log_scale, mask):
        coded = _coded(mask, self.skip)
        idx = scale_table_index(_select(log_scale, coded))
        sym = self.dec.decode_indexed(idx, self.tables)
        self.symbols.append(sym)
        out = torch.zeros_like(mean)
        out[coded.bool().expand_as(mean)] = torch.from_numpy(sym.astype(np.float64)).to(mean.dtype)
        return (out + mean) * mask


def _coded(mask: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """The positions of a pass's ``mask`` whose symbols are coded (not ``skip``-ped)."""
    return mask if skip is None else mask * (1 - skip.to(mask.dtype))
