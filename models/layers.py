"""Building blocks of the learned image codec.

Two families live here:

* **float blocks** (MetaFormer token-mixing blocks, sub-pixel up-sampling) for the analysis
  and synthesis transforms, which only shape the latent and the reconstruction;
* **grid blocks** (:class:`QConv2d`, :class:`GridLinearAttention`, :class:`ChannelReweight`)
  for everything that decides a probability. Their inputs, weights and biases are rounded to
  fixed power-of-two grids, so that in float64 every product and every partial sum is an
  exact dyadic rational well below 2**53: any summation order (thread count, BLAS blocking)
  gives the same bits. In training they run in float32 with the same rounding applied as a
  straight-through fake quantization, so the network learns the grid it will run on.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ACT_BITS", "ACT_MAX", "W_BITS", "W_MAX", "round_ste", "to_grid", "QConv2d", "qrelu",
    "MetaFormerBlock", "subpel_conv", "GridLinearAttention", "ChannelReweight",
]

ACT_BITS = 8  #: fractional bits of every grid activation (grid 2**-8)
ACT_MAX = 256.0  #: activations are clamped to +-ACT_MAX
W_BITS = 10  #: fractional bits of grid weights
W_MAX = 4.0  #: weights are clamped to +-W_MAX
# worst case of one output: (ACT_MAX * 2**ACT_BITS) * (W_MAX * 2**W_BITS) * fan_in
#   = 2**16 * 2**12 * fan_in  -> exact in float64 for fan_in < 2**24


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through (identity) gradient."""
    return x + (torch.round(x) - x).detach()


def to_grid(x: torch.Tensor, bits: int = ACT_BITS, bound: float = ACT_MAX) -> torch.Tensor:
    """Clamp to ``+-bound`` and round to the grid ``2**-bits`` (exact in float64: a scaling by
    a power of two, a rounding and the inverse scaling); straight-through gradient."""
    s = float(1 << bits)
    if not (torch.is_grad_enabled() and x.requires_grad):  # coding: no straight-through term
        return torch.round(torch.clamp(x, -bound, bound) * s) / s
    return round_ste(torch.clamp(x, -bound, bound) * s) / s


class QConv2d(nn.Conv2d):
    """A convolution whose input, weight and bias lie on fixed dyadic grids.

    Run in float64 (the codec's entropy path), its output is computed exactly and therefore
    identically on any thread count or device; in float32 training it is the same function up
    to float32 rounding. Determinism recipe: ARCHITECTURE.md "Determinism" (integer arithmetic
    carried exactly in floats); quantization-aware training after Jacob et al., CVPR 2018.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_grid(x)
        w = to_grid(self.weight, W_BITS, W_MAX)
        b = None if self.bias is None else to_grid(self.bias, ACT_BITS + W_BITS, ACT_MAX)
        return self._conv_forward(x, w, b)


def qrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with slope 1/8 (a power of two: exact on the grid)."""
    return torch.where(x >= 0, x, x * 0.125)


class MetaFormerBlock(nn.Module):
    """MetaFormer block (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR
    2022) as MLICv2 uses it in its transforms (Jiang et al., "MLICv2", 2025): a token mixer
    (depth-wise 7x7 convolution, the cheap spatial mixer of ConvNeXt / PoolFormer) then a
    channel MLP, each in a residual branch with a learned layer scale."""

    def __init__(self, ch: int, expansion: int = 2, kernel: int = 7):
        super().__init__()
        self.mixer = nn.Sequential(
            nn.Conv2d(ch, ch, 1), nn.Conv2d(ch, ch, kernel, padding=kernel // 2, groups=ch))
        self.mlp = nn.Sequential(nn.Conv2d(ch, ch * expansion, 1), nn.GELU(),
                                 nn.Conv2d(ch * expansion, ch, 1))
        self.g1 = nn.Parameter(torch.full((1, ch, 1, 1), 0.5))
        self.g2 = nn.Parameter(torch.full((1, ch, 1, 1), 0.5))

    #: inference works on row bands of about this many hidden activations (bounded memory)
    BAND_ELEMS = 1 << 22

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._run(x)
        # inference: row bands with a halo of kernel // 2 rows (the mixer's only spatial
        # reach), so a 4K image needs no full-size hidden tensors; the same function
        h, w = x.shape[-2:]
        rows = max(8, self.BAND_ELEMS // max(1, w * self.mlp[0].out_channels))
        if rows >= h:
            return self._run(x)
        halo = self.mixer[1].padding[0]
        out = torch.empty_like(x)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            s0, s1 = max(0, r0 - halo), min(h, r1 + halo)
            out[..., r0:r1, :] = self._run(x[..., s0:s1, :])[..., r0 - s0:r1 - s0, :]
        return out

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.g1 * self.mixer(x)
        return x + self.g2 * self.mlp(x)


def subpel_conv(cin: int, cout: int, r: int = 2, kernel: int = 3, q: bool = False) -> nn.Module:
    """Up-sampling by a convolution and a pixel shuffle (Shi et al., CVPR 2016; CompressAI's
    ``subpel_conv3x3``). The shuffle only moves values, so with ``q`` (a :class:`QConv2d`) the
    block stays on the grid."""
    conv = (QConv2d if q else nn.Conv2d)(cin, cout * r * r, kernel, padding=kernel // 2)
    return nn.Sequential(conv, nn.PixelShuffle(r))


class GridLinearAttention(nn.Module):
    """Linear attention (Katharopoulos et al., ICML 2020) with a ReLU feature map, as MLIC++
    uses for its global contexts (Jiang et al., "MLIC++", ICML-NCW 2023), on the grid.

    ``out = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1 + 1)`` over the positions where ``mask``
    is 1. Every product and sum is exact in float64; the one division is a single correctly
    rounded IEEE operation, so the result is reproducible bit for bit. ``q_src`` gives the
    queries, ``kv_src`` keys and values (``v_src`` separate values, if given).
    """

    def __init__(self, cq: int, ckv: int, cout: int, dim: int = 16, cv: int | None = None):
        super().__init__()
        self.q = QConv2d(cq, dim, 1)
        self.k = QConv2d(ckv, dim, 1)
        self.v = QConv2d(ckv if cv is None else cv, cout, 1)
        self.o = QConv2d(cout, cout, 1)

    def forward(self, q_src, kv_src, mask=None, v_src=None):
        q = to_grid(F.relu(self.q(q_src)), 6, 16.0)
        k = to_grid(F.relu(self.k(kv_src)), 6, 16.0)
        v = to_grid(self.v(kv_src if v_src is None else v_src), 6, 16.0)
        if mask is not None:
            k = k * mask
            v = v * mask
        k, v, q = k.flatten(2), v.flatten(2), q.flatten(2)  # B C L
        kv = torch.einsum("bdl,bcl->bdc", k, v)  # exact: grid products, < 2**40
        ksum = k.sum(-1, keepdim=True)  # B d 1
        num = torch.einsum("bdl,bdc->bcl", q, kv)
        den = torch.einsum("bdl,bdo->bol", q, ksum) + 1.0
        out = (num / den).reshape(q_src.shape[0], -1, *q_src.shape[2:])
        return self.o(out)


class ChannelReweight(nn.Module):
    """Channel reweighting of concatenated contexts (squeeze-and-excitation, Hu et al., CVPR
    2018, as MLICv2 reweights its context features) with a hard sigmoid, so that every step is
    exact or a single correctly rounded operation (mean = exact sum / count)."""

    def __init__(self, ch: int, hidden: int = 32):
        super().__init__()
        self.fc1 = QConv2d(ch, hidden, 1)
        self.fc2 = QConv2d(hidden, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = to_grid(x).sum((2, 3), keepdim=True) / float(x.shape[2] * x.shape[3])
        w = torch.clamp(self.fc2(qrelu(self.fc1(s))) * 0.125 + 0.5, 0.0, 1.0)
        return x * to_grid(w)
