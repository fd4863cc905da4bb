"""The image network on the tiny configuration: shapes, gradients, the grid path's exactness
and the shared parameter path round trip (compress == decompress)."""
import hashlib

import numpy as np
import pytest
import torch

from bitstream.rans import RansDecoder, RansEncoder
from models.entropy import (LOG_LO, LOG_STEPS_PER_UNIT, N_LEVELS, gaussian_likelihood,
                            gaussian_tables, scale_table_index)
from models.image import CONFIGS, ImageModel
from models.layers import MetaFormerBlock, QConv2d, to_grid


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = ImageModel("tiny")
    # move the scalers so that the random latent is not all zeros
    with torch.no_grad():
        m.q_enc.fill_(-1.0)
    return m.eval()


def test_configs_sizes():
    n_small = sum(p.numel() for p in ImageModel("small").parameters())
    assert 1e6 < n_small < 4e6
    assert CONFIGS["paper"].n == 192 and CONFIGS["paper"].m == 320 and CONFIGS["paper"].slices == 10


def test_forward_backward(tiny):
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([0.0, 1.7])
    tiny.train()
    out = tiny(x, q)
    tiny.eval()
    assert out["x_hat"].shape == x.shape
    liks = out["likelihoods"]["y"] + [out["likelihoods"]["z"]]
    assert all(((l > 0) & (l <= 1)).all() for l in liks)
    loss = sum((-torch.log2(l)).sum() for l in liks) + out["x_hat"].square().sum()
    loss.backward()
    assert tiny.q_enc.grad is not None and tiny.latent.param[0].l1.weight.grad is not None
    tiny.zero_grad()


def test_lambda_and_scaler_interpolate(tiny):
    lam = tiny.lmbda(torch.tensor([0.0, 0.5, 1.0, 2.0]))
    assert torch.allclose(lam[[0, 2, 3]], torch.tensor(CONFIGS["tiny"].lambdas))
    assert lam[0] < lam[1] < lam[2]


def test_metaformer_row_bands(monkeypatch):
    """Inference in row bands (bounded memory for 4K images) computes the same function as
    the whole-tensor pass, at image borders and band seams alike."""
    torch.manual_seed(0)
    block = MetaFormerBlock(8).eval()
    x = torch.randn(1, 8, 45, 31)
    with torch.no_grad():
        whole = block(x)
        monkeypatch.setattr(MetaFormerBlock, "BAND_ELEMS", 8 * 31 * 16)  # bands of 8 rows
        banded = block(x)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(block(x), whole, rtol=0, atol=1e-5)  # with grad: one pass


def test_grid_conv_exact_across_threads():
    torch.manual_seed(1)
    conv = QConv2d(48, 64, 3, padding=1).double()
    x = torch.randn(1, 48, 40, 56, dtype=torch.float64) * 20
    n = torch.get_num_threads()
    digests = []
    for t in (1, 2):
        torch.set_num_threads(t)
        digests.append(hashlib.sha256(conv(x).detach().numpy().tobytes()).hexdigest())
    torch.set_num_threads(n)
    assert digests[0] == digests[1]
    # on the grid, float64 equals an integer computation
    ref = conv(x).detach()
    assert torch.equal(ref, to_grid(ref, 18, 1e12))


def test_scale_index_and_tables():
    ls = LOG_LO + np.arange(N_LEVELS) / LOG_STEPS_PER_UNIT
    assert np.array_equal(scale_table_index(ls), np.arange(N_LEVELS))
    assert scale_table_index(np.array([-100.0, 100.0])).tolist() == [0, N_LEVELS - 1]
    t = gaussian_tables()
    assert len(t) == N_LEVELS
    # the table of level 40 matches the continuous likelihood closely
    s = 40
    f = t.freqs(s)[:-1] / 2.0 ** t.precision
    v = torch.arange(t.offsets[s], t.offsets[s] + f.size, dtype=torch.float64)
    p = gaussian_likelihood(v, torch.zeros(()), torch.tensor(float(ls[s]))).numpy()
    assert np.abs(f - p).max() < 1e-3


def test_compress_decompress_roundtrip(tiny):
    tables = tiny.build_tables()
    m = ImageModel(tiny.cfg)
    m.load_state_dict(tiny.state_dict())
    m.eval().deterministic()
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        y = m.analysis(x, 1.0)
        enc = RansEncoder()
        r = m.compress_latent(y, enc, tables)
        data = enc.flush()
        dec = RansDecoder(data)
        r2 = m.decompress_latent(dec, tables, y.shape[2], y.shape[3])
    dec.finish()
    assert enc.checksum == dec.checksum
    assert torch.equal(r["y_hat"], r2["y_hat"]) and torch.equal(r["y_rec"], r2["y_rec"])
    assert any(np.any(s != 0) for s in r["symbols"])
