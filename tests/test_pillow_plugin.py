"""The Pillow plugin driven as a Pillow user drives it: ``import codec``, then ``Image.open`` /
``im.save`` on ``.ncz`` paths; lazy header, ``verify()`` on CRCs, lossless and grey modes,
errors. Real shipped weights on small crops of skimage's bundled photo."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

import codec
from bitstream import FormatError, unpack
from codec import pillow_plugin
from codec.errors import CodecError


@pytest.fixture(scope="module")
def photo():
    return astronaut()[40:72, 180:244].copy()  # 32 x 64 RGB: one 64 x 64 coding block


@pytest.fixture(scope="module")
def ncz(tmp_path_factory, photo):
    path = tmp_path_factory.mktemp("p") / "photo.ncz"
    Image.fromarray(photo).save(path, quality=3)
    return path


def test_save_open_round_trip(ncz, photo):
    data = ncz.read_bytes()
    api = pillow_plugin._image_codec()
    assert data == api.encode(photo, quality=3)  # the plugin writes exactly what the API writes
    with Image.open(ncz) as im:
        assert (im.format, im.size, im.mode) == ("NCZ", (64, 32), "RGB")
        assert im.info["quality"] == 3.0 and im.info["kind"] == "image"
        assert Image.MIME[im.format] == "image/x-ncodec"
        out = np.asarray(im)
    assert np.array_equal(out, api.decode(data))
    assert np.abs(out.astype(int) - photo).mean() < 20  # a real reconstruction


def test_open_reads_only_the_header(ncz):
    data = ncz.read_bytes()
    head_len = data[10]  # signature (8), version (2), HEAD chunk: a 1-byte varint length (< 128)
    assert head_len < 128
    im = Image.open(io.BytesIO(data[:10 + 1 + 4 + head_len + 4]))  # nothing after the header
    assert (im.size, im.mode, im.info["model_id"]) == ((64, 32), "RGB", "image_small")
    with pytest.raises(FormatError, match="truncated"):
        im.load()


def test_import_and_open_do_not_load_torch(ncz):
    code = (f"import sys, codec; from PIL import Image; im = Image.open({str(ncz)!r}); "
            "assert im.size == (64, 32) and im.format == 'NCZ'; "
            "assert 'torch' not in sys.modules, 'torch loaded'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_verify_checks_crcs(ncz):
    data = ncz.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x10
    with Image.open(io.BytesIO(bytes(bad))) as im:
        assert im.size == (64, 32)  # the header is intact
        with pytest.raises(FormatError, match="CRC"):
            im.verify()
    with Image.open(io.BytesIO(data[:-3])) as im:
        with pytest.raises(FormatError):
            im.verify()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_lossless_save_open_exact(tmp_path, photo, mode):
    src = Image.fromarray(photo[:24, :32]).convert(mode)
    path = tmp_path / f"x_{mode}.ncz"
    src.save(path, lossless=True)
    assert unpack(path.read_bytes())[0].model_id == "hclt-photo"
    with Image.open(path) as im:
        assert (im.mode, im.size, im.info["lossless"]) == (mode, (32, 24), True)
        assert np.array_equal(np.asarray(im), np.asarray(src))


def test_lossless_image_set_is_multi_frame():
    digits = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    data = codec.LosslessCodec("hclt-mnist").encode_set(digits)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.mode, im.size, im.n_frames) == ("L", (28, 28), 3)
        for i in (0, 2):
            im.seek(i)
            assert np.array_equal(np.asarray(im), digits[i])


def test_save_to_file_object_and_errors(photo):
    buf = io.BytesIO()
    Image.fromarray(photo[:16, :16]).save(buf, format="NCZ", lossless=True)
    assert Image.open(io.BytesIO(buf.getvalue())).format == "NCZ"
    with pytest.raises(CodecError, match="alpha"):
        Image.new("RGBA", (8, 8)).save(io.BytesIO(), format="NCZ", quality=2)
    with pytest.raises(CodecError, match="out of ncodec's range"):  # not JPEG's 0..100
        Image.fromarray(photo[:8, :8]).save(io.BytesIO(), format="NCZ", quality=90)
    with pytest.raises(FormatError):  # our signature, broken header: a clear error
        Image.open(io.BytesIO(buf.getvalue()[:20]))
    pillow_plugin.register()  # idempotent
    assert Image.registered_extensions()[".ncz"] == "NCZ"


def test_video_stream_opens_as_frames(tmp_path, monkeypatch):
    """A video ``.ncz`` is a multi-frame image (untrained tiny video model, shipped intra)."""
    video = pytest.importorskip("codec.video")
    import torch

    from models.video import VideoModel

    torch.manual_seed(0)
    video.export_weights(VideoModel("tiny"), tmp_path / f"{video.DEFAULT_MODEL}.safetensors")
    monkeypatch.setattr(video, "WEIGHTS_DIR", tmp_path)
    frames = [astronaut()[4 * i:4 * i + 32, 200:248].copy() for i in range(3)]
    path = tmp_path / "clip.ncz"
    with open(path, "wb") as f, video.VideoEncoder(f, width=48, height=32, fmt="rgb",
                                                   quality=1, fps=10) as enc:
        recon = [enc.encode(a) for a in frames]
    with Image.open(path) as im:
        assert (im.size, im.mode, im.n_frames, im.info["kind"]) == ((48, 32), "RGB", 3, "video")
        assert np.array_equal(np.asarray(im), recon[0])
        im.seek(2)
        assert im.tell() == 2 and np.array_equal(np.asarray(im), recon[2])


def test_codec_exports_are_lazy():
    assert codec.ImageCodec.__module__ == "codec.image"
    assert codec.LosslessCodec.__module__ == "codec.lossless"
    assert {"ImageCodec", "LosslessCodec", "VideoEncoder", "VideoDecoder"} <= set(dir(codec))
    with pytest.raises(AttributeError):
        codec.NoSuchThing  # noqa: B018
