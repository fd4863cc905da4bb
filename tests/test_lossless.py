"""The circuit lossless codec: exact round trips, determinism across thread counts, bad inputs."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitstream import FormatError, pack, unpack
from codec.errors import CodecError
from codec.lossless import LosslessCodec

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _smooth_rgb(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + yy * 5) % 256], -1)
    return np.clip(base + rng.integers(-6, 7, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (7, 1, 3), (13, 17, 3), (12, 10, 1), (1, 1, 1)])
def test_photo_round_trip_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    c = LosslessCodec()
    assert np.array_equal(c.decode(c.encode(img)), img)


def test_photo_round_trip_smooth_and_grey_2d():
    c = LosslessCodec()
    img = _smooth_rgb(40, 56)
    data = c.encode(img)
    assert np.array_equal(c.decode(data), img)
    assert len(data) * 8 / img[:, :, 0].size < 24  # smooth content compresses
    grey = img[:, :, 1]
    assert np.array_equal(c.decode(c.encode(grey))[:, :, 0], grey)


@pytest.mark.skipif(not (DATA / "kodak" / "kodim23.png").exists(), reason="shared Kodak absent")
def test_photo_kodak_crop_beats_raw():
    from PIL import Image

    img = np.asarray(Image.open(DATA / "kodak" / "kodim23.png").convert("RGB"))[200:264, 300:380]
    c = LosslessCodec()
    data = c.encode(img)
    assert np.array_equal(c.decode(data), img)
    assert len(data) * 8 / (64 * 80) < 14


def test_small_circuit_round_trip_and_set():
    rng = np.random.default_rng(1)
    imgs = np.zeros((3, 28, 28), np.uint8)
    imgs[:, 8:20, 10:18] = rng.integers(100, 256, (3, 12, 8))
    for model in ("hclt-mnist", "hclt-fashion-mnist"):
        c = LosslessCodec(model)
        assert np.array_equal(c.decode(c.encode(imgs[0][:, :, None]))[:, :, 0], imgs[0])
        assert np.array_equal(c.decode_set(c.encode_set(imgs)), imgs)
        # a single-image decoder refuses a set file with a clear error
        with pytest.raises(FormatError):
            c.decode(c.encode_set(imgs))


def test_bad_inputs_raise_one_clear_error():
    c = LosslessCodec()
    with pytest.raises(CodecError, match="alpha"):
        c.encode(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(CodecError, match="16-bit"):
        c.encode(np.zeros((4, 4, 1), np.uint16))
    with pytest.raises(CodecError):
        c.encode(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(CodecError):
        c.encode(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(CodecError):
        c.encode(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(CodecError, match="28x28"):
        LosslessCodec("hclt-mnist").encode(np.zeros((10, 10, 1), np.uint8))
    with pytest.raises(CodecError):
        LosslessCodec("no-such-model")


def test_corrupt_and_mismatched_streams():
    c = LosslessCodec()
    img = _smooth_rgb(16, 16, seed=3)
    data = c.encode(img)
    header, units = unpack(data)
    # wrong weights digest: a clear CodecError, not garbage
    other = dataclasses.replace(header, weights_digest=bytes(32))
    with pytest.raises(CodecError, match="other weights"):
        c.decode(pack(other, [(u.type, u.checksum, u.payload) for u in units]))
    # payload damage (CRCs recomputed by pack): the decoder must stop with FormatError
    u = units[0]
    bad = bytearray(u.payload)
    bad[len(bad) // 2] ^= 0x5A
    with pytest.raises(FormatError):
        c.decode(pack(header, [(u.type, u.checksum, bytes(bad))]))
    with pytest.raises(FormatError):
        c.decode(pack(header, [(u.type, u.checksum ^ 1, u.payload)]))
    with pytest.raises(FormatError):
        c.decode(data[:-5])


_DECODE_2_THREADS = """
import sys, numpy as np, torch, numba
torch.set_num_threads(2); numba.set_num_threads(2)
from codec.lossless import LosslessCodec
data = open(sys.argv[1], 'rb').read()
img = LosslessCodec().decode(data)
np.save(sys.argv[2], img)
"""


def test_encode_one_thread_decode_two_threads(tmp_path):
    import numba
    import torch

    img = _smooth_rgb(48, 40, seed=5)
    n_torch, n_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        data = LosslessCodec().encode(img)
    finally:
        torch.set_num_threads(n_torch)
        numba.set_num_threads(n_numba)
    (tmp_path / "a.ncz").write_bytes(data)
    subprocess.run([sys.executable, "-c", _DECODE_2_THREADS, str(tmp_path / "a.ncz"),
                    str(tmp_path / "out.npy")], cwd=ROOT, check=True,
                   env={"NUMBA_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert np.array_equal(np.load(tmp_path / "out.npy"), img)
    # and the encoder's bytes do not depend on the thread count either
    if n_numba > 1:
        assert LosslessCodec().encode(img) == data
