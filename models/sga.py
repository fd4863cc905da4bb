"""Encoder-side latent refinement by stochastic Gumbel annealing (SGA).

Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression", NeurIPS 2020, as
MLICv2+ uses it: the latent ``y`` is optimised for the rate-distortion loss of the trained
model, with rounding relaxed to a Gumbel-softmax choice between floor and ceil whose
temperature anneals towards hard rounding. Only the encoder runs this; the decoder and the
bitstream are unchanged. The model's probability path is run in float32 on a copy.
"""
from __future__ import annotations

import copy

import torch

from .latent_codec import TrainSlot
from .entropy import gaussian_likelihood

__all__ = ["EFFORTS", "sga_optimize", "ImageRefiner", "PFrameRefiner"]

#: ``--effort`` -> (Adam steps, learning rate). Measured with the shipped weights 6 on Kodak
#: (results/image/sga_iterations_weights6.json): 30 steps at 2e-2 keep ~90 % of the PSNR gain
#: of 100 steps at 5e-3 for 30 % of the time; more steps than 100 gained nothing.
EFFORTS = {1: (30, 2e-2), 2: (100, 5e-3)}


def _sga_round(y: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft rounding: floor or ceil sampled with Gumbel-softmax probabilities from the
    distances (SGA, eq. 8 of Yang et al.)."""
    fl = torch.floor(y)
    d = y - fl  # in [0, 1)
    eps = 1e-6
    logits = torch.stack([-torch.atanh((d).clamp(-1 + eps, 1 - eps)) / tau,
                          -torch.atanh((1 - d).clamp(-1 + eps, 1 - eps)) / tau], -1)
    w = torch.nn.functional.gumbel_softmax(logits, tau=1.0, hard=False)
    return fl + w[..., 1]


class _SGASlot(TrainSlot):
    def __init__(self, tau: float):
        super().__init__(noise=False)
        self.tau = tau

    def code(self, s, p, y, mean, log_scale, mask):
        y_hat = (_sga_round(y - mean, self.tau) + mean) * mask
        lik = gaussian_likelihood(y_hat, mean, log_scale)
        self.likelihoods.append(torch.where(mask.bool().expand_as(lik), lik, torch.ones_like(lik)))
        return y_hat


def sga_optimize(decode, y: torch.Tensor, x: torch.Tensor, lam: float, npx: int, iters: int,
                 lr: float, tau_max: float = 0.5, lrp: bool = True) -> torch.Tensor:
    """The SGA loop shared by the image and video coders: Adam on the latent ``y`` for
    ``lam * 255^2 * MSE(decode(slot, y), x) + bits / npx``, where ``decode`` codes ``y``
    through ``slot`` (soft rounding, likelihoods) and returns the reconstruction."""
    y = y.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    for it in range(iters):
        tau = tau_max * min(1.0, max(0.0, 1.0 - it / max(1, iters)) * 1.0) + 1e-3
        slot = _SGASlot(tau)
        slot.lrp = lrp
        x_hat = decode(slot, y)
        bpp = sum((-torch.log2(l)).sum() for l in slot.likelihoods) / npx
        loss = lam * 255.0 ** 2 * torch.mean((x_hat - x) ** 2) + bpp
        opt.zero_grad()
        loss.backward()
        opt.step()
    return y.detach()


def _frozen_float_copy(model):
    m = copy.deepcopy(model).float().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class ImageRefiner:
    """SGA of an image model's latent (:meth:`models.image.ImageModel.analysis` output) through
    a float32 copy of the model, made once: the hyperprior is kept fixed (``z`` is re-derived
    from the refined latent when it is coded). Encoder only: the decoder is unchanged."""

    def __init__(self, model, iters: int = 100, lr: float = 5e-3, tau_max: float = 0.5):
        self.m, self.iters, self.lr, self.tau_max = _frozen_float_copy(model), iters, lr, tau_max

    def __call__(self, x: torch.Tensor, y: torch.Tensor, q: float) -> torch.Tensor:
        """Refined latent (same shape as ``y``) for image ``x`` (1x3xHxW in [0,1])."""
        m = self.m
        qt = torch.tensor([float(q)], device=y.device)
        dec_scale = m._scaler(m.q_dec, qt)
        with torch.no_grad():
            z_hat = m.entropy_bottleneck(m.h_a(y.float()), training=False)[0]
            hyper = m._hyper(z_hat)
        with torch.enable_grad():
            return sga_optimize(lambda slot, yy: m.g_s(m.latent.run(hyper, slot, yy)[1] * dec_scale),
                                y, x.float(), m.lmbda(qt).item(), x.shape[2] * x.shape[3],
                                self.iters, self.lr, self.tau_max)


class PFrameRefiner:
    """SGA of a P frame's latent for :meth:`models.video.VideoModel.p_frame` (``refine=``):
    the entropy parameters, temporal contexts and motion-compensated prediction the frame
    was coded with stay fixed; the latent is optimised through a float32 copy of the
    contextual decoder. Encoder only: the decoder and the bitstream are unchanged."""

    def __init__(self, model, iters: int, lr: float):
        self.m, self.iters, self.lr = _frozen_float_copy(model), iters, lr

    def __call__(self, x, y, ctx, contexts, pred, q, fmt) -> torch.Tensor:
        m = self.m
        ctx, pred, q = ctx.float(), pred.float(), q.float()
        c1, c2, c3 = (c.float() for c in contexts)
        with torch.enable_grad():
            return sga_optimize(lambda slot, yy: m.synthesize(ctx, slot, yy, c1, c2, c3, q, fmt, pred)[2],
                                y, x.float(), m.lmbda(q).item(), 4 * x.shape[2] * x.shape[3],
                                self.iters, self.lr, lrp=False)
