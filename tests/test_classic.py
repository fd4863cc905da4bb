"""tools.classic: every classic adapter round-trips; video runs low delay (I then P only)."""
from fractions import Fraction

import numpy as np
import pytest

from codec.errors import CodecError
from codec.metrics import psnr
from tools.classic import DEFAULTS, IMAGE_CODECS, VIDEO_CODECS
from tools.eval_codecs import get_codec
from tools.eval_media import Video, yuv420_to_rgb


def _image(h=64, w=80):
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 3, y * 4, (x + y) * 2], axis=-1) % 256
    return img.astype(np.uint8)


def _video(frames=6, h=64, w=64):
    t, y, x = np.mgrid[0:frames, 0:h, 0:w]
    luma = (128 + 60 * np.sin((x + 2 * t) / 6.0) * np.cos(y / 9.0)).astype(np.uint8)
    chroma = np.full((frames, h // 2, w // 2), 128, np.uint8)
    chroma += (np.arange(w // 2) // 4).astype(np.uint8)[None, None, :]
    return Video(luma, chroma, chroma.copy(), Fraction(10))


@pytest.mark.parametrize("name", sorted(IMAGE_CODECS))
def test_image_codec_round_trip(name):
    codec = get_codec(name)
    img = _image()
    if codec.lossless:
        data = codec.encode(img, codec.settings[0])
        assert np.array_equal(codec.decode(data), img)
        return
    lo, hi = codec.settings[1], codec.settings[-2]
    small, large = codec.encode(img, lo), codec.encode(img, hi)
    assert len(small) < len(large)
    dec_lo, dec_hi = codec.decode(small), codec.decode(large)
    assert dec_hi.shape == img.shape and dec_hi.dtype == np.uint8
    assert psnr(img, dec_hi) > psnr(img, dec_lo) > 15


def _frame_types(adapter, data):
    import av
    from av.video.frame import PictureType

    ctx = av.CodecContext.create(adapter.decoder, "r")
    frames = [f for p in ctx.parse(data) + ctx.parse(None) for f in ctx.decode(p)]
    frames += ctx.decode(None)
    return "".join("I" if f.key_frame else PictureType(f.pict_type).name for f in frames)


@pytest.mark.parametrize("name", sorted(VIDEO_CODECS))
def test_video_codec_low_delay_round_trip(name):
    video = _video()
    codec = get_codec(name)
    data = codec.encode(video, codec.settings[1])
    dec = codec.decode(data)
    assert dec.frames == video.frames and dec.y.shape == video.y.shape
    assert np.mean([psnr(video.y[t], dec.y[t]) for t in range(video.frames)]) > 30
    assert _frame_types(codec, data) == "I" + "P" * (video.frames - 1)


@pytest.mark.parametrize("name", ["x264", "x265"])
def test_video_intra_period(name):
    codec = get_codec(name, intra_period=3)
    types = _frame_types(codec, codec.encode(_video(), codec.settings[2]))
    assert types == "IPPIPP"


def test_registry_errors_and_variants():
    with pytest.raises(CodecError, match="unknown codec"):
        get_codec("nonesuch")
    with pytest.raises(CodecError, match="integer"):
        get_codec("jxl@fast")
    assert get_codec("jxl-lossless@9").description.startswith("JPEG XL lossless effort 9")
    assert get_codec("x264@medium").name == "x264@medium"
    assert set(DEFAULTS["image"]) <= set(IMAGE_CODECS)


def test_yuv_to_rgb_ranges():
    y = np.array([[16, 235]], np.uint8).repeat(2, 0)
    c = np.full((1, 1), 128, np.uint8)
    rgb = yuv420_to_rgb(y, c, c, full_range=False)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    rgb = yuv420_to_rgb(y, c, c, full_range=True)
    assert rgb[0, 0].tolist() == [16, 16, 16]
    red = yuv420_to_rgb(np.full((2, 2), 76, np.uint8), np.full((1, 1), 85, np.uint8),
                        np.full((1, 1), 255, np.uint8), full_range=True)
    assert red[0, 0].tolist() == [254, 0, 0]  # BT.601 red: Y 76, Cr 255 (clipped 255.5)
