"""Array in, array out: numpy, PIL and torch inputs give the very same files; ``decode``
returns each form; a torch batch round trip; a GPU round trip where CUDA exists (the shell
pipe through stdin/stdout is examples/shell_pipe.sh, run by test_examples). Real shipped
weights on small crops of skimage's bundled photo."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from codec import convert, pillow_plugin
from codec.errors import CodecError
from codec.lossless import LosslessCodec
from codec.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    return astronaut()[40:72, 180:244].copy()  # 32 x 64 RGB: one 64 x 64 coding block


@pytest.fixture(scope="module")
def ic():
    return pillow_plugin._image_codec()  # the shared default ImageCodec


def _chw(a):
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


def test_every_input_form_gives_the_same_file(ic, photo):
    ref = ic.encode(photo, quality=2.5)
    t = _chw(photo)
    for x in (Image.fromarray(photo), t, t[None], t.double(), torch.from_numpy(photo).permute(2, 0, 1)):
        assert ic.encode(x, quality=2.5) == ref
    grey = photo[:, :, 1]  # grey is coded as RGB: HxW, HxWx1, PIL L and 1xHxW agree
    g = ic.encode(grey, quality=1)
    assert ic.encode(grey[:, :, None], quality=1) == g == ic.encode(Image.fromarray(grey), quality=1)
    assert ic.encode(_chw(grey[:, :, None]), quality=1) == g


def test_decode_outputs(ic, photo):
    data = ic.encode(photo, quality=2.5)
    a = ic.decode(data)
    assert a.shape == photo.shape and a.dtype == np.uint8 and psnr(photo, a) > 22
    im = ic.decode(data, output="pil")
    assert (im.mode, im.size) == ("RGB", (64, 32)) and np.array_equal(np.asarray(im), a)
    t = ic.decode(data, output="torch")
    assert t.shape == (1, 3, 32, 64) and t.dtype == torch.float32
    assert torch.equal(t, _chw(a)[None])
    with pytest.raises(CodecError, match="output"):
        ic.decode(data, output="jpeg")


def test_torch_batch_round_trip(ic, photo):
    x = torch.stack([_chw(photo), _chw(photo[:, ::-1].copy())])  # N x C x H x W in [0, 1]
    files = ic.encode_batch(x, quality=3)
    assert len(files) == 2 and all(isinstance(f, bytes) for f in files)
    assert files[0] == ic.encode(photo, quality=3)
    y = ic.decode_batch(files)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert 10 * torch.log10(1 / torch.mean((y - x) ** 2)) > 22
    assert [a.shape for a in ic.decode_batch(files, output="numpy")] == [(32, 64, 3)] * 2
    assert len(ic.decode_batch(files, output="pil")) == 2
    assert ic.encode_batch([photo, Image.fromarray(photo)], quality=3)[1] == files[0]
    assert len(ic.encode_batch(np.stack([photo, photo]), quality=3)) == 2  # N x H x W x C


def test_lossless_takes_every_form(photo):
    lc = LosslessCodec()
    small = photo[:16, :24]
    data = lc.encode(small)
    assert lc.encode(Image.fromarray(small)) == data == lc.encode(_chw(small))
    assert torch.equal(lc.decode(data, output="torch"), _chw(small)[None])
    grey = Image.fromarray(small[:, :, 0])
    g = lc.decode(lc.encode(grey), output="pil")
    assert g.mode == "L" and np.array_equal(np.asarray(g), small[:, :, 0])
    out = lc.decode_batch(lc.encode_batch([small, small[::-1]]), output="numpy")
    assert np.array_equal(out[1], small[::-1])


def test_bad_inputs_are_codec_errors(ic, photo):
    t = _chw(photo)
    for bad, msg in [(t[None].repeat(2, 1, 1, 1), "batch of 2"), (t.clone().fill_(float("nan")), "NaN"),
                     (t.int(), "float"), (t[None, None], "shape"), ([[1, 2]], "numpy array"),
                     ("photo.png", "numpy array")]:
        with pytest.raises(CodecError, match=msg):
            ic.encode(bad)
    with pytest.raises(CodecError, match="different sizes"):
        convert.from_arrays([photo, photo[:8]], "torch")
    with pytest.raises(CodecError, match="alpha"):
        ic.encode(Image.new("RGBA", (8, 8)))
    assert convert.to_array(t * 3 - 1).max() == 255  # out-of-range floats are clamped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_tensors_round_trip(ic, photo):
    x = _chw(photo)[None].cuda()
    data = ic.encode(x, quality=3)
    assert data == ic.encode(photo, quality=3)
    y = ic.decode_batch([data], device="cuda")
    assert y.is_cuda and y.shape == x.shape
