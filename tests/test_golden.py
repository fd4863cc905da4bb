"""Golden outputs: pin the bytes of the rANS coder, the container and the codecs' streams, and
the pixels their decoders produce, so that a silent format or model change fails here.

Strictness (see ../shared/design/ARCHITECTURE.md, "Determinism": only what decides a
probability is promised bit-exact, the transforms that shape pixels may stay float):

* rANS, container, lossless: integer / fixed-order float64 paths: bytes and pixels exact.
* image decode: the latent is exact (the container's symbol checksum is verified), but the
  latent residual prediction and the synthesis g_s run in float32, so the pixels may differ
  across CPUs: at most 1 level on at most 0.1 % of the pixels.
* image re-encode: the analysis g_a and the hyper-analysis h_a are float32 (encoder only):
  another CPU may round a latent element the other way, which changes the bytes legitimately.
  So the bytes must be equal exactly whenever the re-encoded latent equals the committed one
  (from there on everything is the exact probability path and the coder); if the latent
  differs, at most 0.5 % of its elements may differ and the byte check is skipped.
* video decode: exact. P frames run on the exact grid path; the intra frame is synthesised
  in float64 and rounded (margin measured in codec/video.py); a pixel moving there would
  desynchronise the following P frames, whose checksums would fail anyway.

The source is committed (golden/image_src.png: 72x64 pixels around the left parrot's eye in
Kodak kodim23; the image, lossless and video inputs are cut from it), so no dataset is needed. After a deliberate change (e.g. new
shipped weights) regenerate with ``python tests/test_golden.py --regen``: it rewrites
golden/ and golden/digests.json and prints what changed.
"""
import dataclasses
import hashlib
import io
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from bitstream import ColorFormat, ContainerReader, Header, StreamKind, UnitType, pack, unpack
from codec.errors import CodecError
from test_rans import GAUSS, roundtrip
from test_video_model import one_thread  # noqa: F401  (autouse fixture: one torch thread)

GOLDEN = Path(__file__).resolve().parent / "golden"
KODAK = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "kodak" / "kodim23.png"
REGEN = "shipped weights changed: regenerate with python tests/test_golden.py --regen"
IMAGE_Q = 3.0
RANS = {"rans_1lane": 3000, "rans_4lane": 20000}  #: below / above the multi-lane threshold
#: adaptive intra off: its trial may code a P frame intra, and the clip is meant to cover
#: copy-block P frames (the quality is one where the shipped weights choose copy blocks)
VIDEO = dict(fmt="yuv420", quality=0.25, intra_period=-1, refresh_period=2, adaptive_intra=False)
#: adaptive intra on, at a quality where the shipped weights code both P frames as residual
#: frames (flag 20, with copy blocks, is covered by test_video_codec's tiny models)
VIDEO_RESIDUAL = dict(VIDEO, quality=2.5, adaptive_intra=True, residual_frames=True)
#: files of an older format version, which today's writers no longer produce: kept as they are
FROZEN = ("image_q3_v1.ncz", "video_v2.ncz", "video_v2_ref.npz", "video_v3.ncz",
          "video_v3_ref.npz")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digests() -> dict:
    p = GOLDEN / "digests.json"
    return json.loads(p.read_text()) if p.exists() else {}


def golden(name: str) -> bytes:
    """A committed golden file, checked against its digest in digests.json."""
    data = (GOLDEN / name).read_bytes()
    assert sha(data) == digests()[name], f"{name} does not match digests.json"
    return data


def read_png(name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(golden(name))).convert("RGB"))


def png_bytes(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def assert_close_pixels(out: np.ndarray, ref: np.ndarray) -> None:
    """Float synthesis tolerance: at most 1 level, on at most 0.1 % of the pixels."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    d = np.abs(out.astype(np.int16) - ref)
    assert d.max() <= 1, f"max pixel difference {d.max()}"
    moved = d.reshape(-1, d.shape[-1]).any(1).mean()
    assert moved <= 1e-3, f"{moved:.2%} of the pixels differ"


@contextmanager
def shipped_weights():
    """Turn the decoders' wrong-weights error into the instruction to regenerate."""
    try:
        yield
    except CodecError as e:
        if re.search(r"other .*weights", str(e)):
            pytest.fail(f"{REGEN} ({e})")
        raise


# ---- sources ----------------------------------------------------------------------------
def lcg(n: int, seed: int) -> np.ndarray:
    """``n`` 32-bit values of Numerical Recipes' LCG (never changes with numpy's generators)."""
    out = np.empty(n, np.int64)
    x = seed
    for i in range(n):
        x = (1664525 * x + 1013904223) & 0xFFFFFFFF
        out[i] = x
    return out


def rans_calls(n: int, seed: int) -> list:
    """Indexed Gaussian symbols (with escapes) and categorical symbols at two precisions."""
    u = lcg(4 * n, seed)
    idx = (u[:n] >> 8) % len(GAUSS)
    tri = ((u[n:2 * n] >> 8) + (u[2 * n:3 * n] >> 8)) / float(1 << 24) - 1.0  # in [-1, 1)
    sym = np.rint(tri * 2.5 * GAUSS.levels[idx]).astype(np.int32)
    sym[::97] = ((u[3 * n:4 * n:97] >> 4) - (1 << 27)).astype(np.int32)  # escapes, both signs
    k = 16
    c = lcg(n * (k + 1), seed + 1)
    pmf = ((c[:n * k] >> 12) % 1000 + 1).reshape(n, k).astype(np.float64)
    pmf[:, 3] *= 50.0  # one likely symbol per row
    csym = ((c[n * k:] >> 16) % k).astype(np.int32)
    h = n // 2
    return [("i", sym[:h], idx[:h].astype(np.int32), GAUSS), ("c", csym[:h], pmf[:h], 16),
            ("i", sym[h:], idx[h:].astype(np.int32), GAUSS), ("c", csym[h:], pmf[h:], 24)]


def container_bytes() -> tuple[Header, list, bytes]:
    h = Header(StreamKind.VIDEO, 352, 288, ColorFormat.YUV420, 8, model_id="golden-v1",
               weights_digest=bytes(range(32)), quality=1.25, fps_num=30000, fps_den=1001,
               frame_count=0, params={"intra_period": 3, "note": "golden", "x": 2.5, "ok": True})
    units = [(UnitType.KEY if i % 3 == 0 else UnitType.INTER, 0x9E3779B9 * (i + 1) & 0xFFFFFFFF,
              bytes((7 * i + j) & 0xFF for j in range(5 * i))) for i in range(7)]
    return h, units, pack(h, units)


def source() -> np.ndarray:
    """The committed 72x64 crop (regeneration takes it from Kodak when available)."""
    return read_png("image_src.png")


def image_crop(src: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(src[8:56, :64])  # 64 x 48


def lossless_crop(src: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(src[16:48, 20:52])  # 32 x 32


def video_clip(src: np.ndarray) -> list:
    """3 frames of 64 x 64 YUV 4:2:0 panning 2 pixels per frame across the crop (coded as an
    intra frame and two P frames with copy blocks, the second with a feature refresh)."""
    from codec.video import rgb_to_yuv420

    return [rgb_to_yuv420(src[:, 2 * t:2 * t + 64]) for t in range(3)]


def encode_video(frames: list, settings: dict = VIDEO) -> bytes:
    from codec.video import VideoEncoder

    buf = io.BytesIO()
    with VideoEncoder(buf, 64, 64, **settings) as enc:
        for f in frames:
            enc.encode(f)
    return buf.getvalue()


def decode_video(data: bytes) -> list:
    from codec.video import VideoDecoder

    return list(VideoDecoder(data))


def video_npz(frames: list) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, *[p for f in frames for p in f])
    return buf.getvalue()


def read_video_npz(name: str) -> list:
    z = np.load(io.BytesIO(golden(name)))
    planes = [z[f"arr_{i}"] for i in range(len(z.files))]
    return [tuple(planes[i:i + 3]) for i in range(0, len(planes), 3)]


# ---- tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,n", RANS.items())
def test_rans_bytes(name, n):
    data = roundtrip(rans_calls(n, seed=n))  # also decodes and compares the symbols
    assert data[0] == (1 if n < 16384 else 4)
    assert sha(data) == digests()[name]


def test_container_bytes():
    h, units, data = container_bytes()
    assert sha(data) == digests()["container"]
    h2, u2 = unpack(data)
    # the writer patches the count in; the file keeps the digest's first 8 bytes
    assert h2 == dataclasses.replace(h, frame_count=len(units), weights_digest=h.weights_digest[:8])
    assert [(u.type, u.checksum, u.payload) for u in u2] == units
    assert [u.index for u in u2] == list(range(len(units)))


@pytest.fixture(scope="module")
def image_codec():
    from codec.image import ImageCodec

    return ImageCodec()


def test_image_decode(image_codec):
    with shipped_weights():
        out = image_codec.decode(golden("image_q3.ncz"))  # verifies the symbol checksum
    assert_close_pixels(out, read_png("image_q3.png"))


def test_image_reencode(image_codec):
    data = golden("image_q3.ncz")
    with shipped_weights():
        ref = image_codec.decode_latent(data)[1]["y_hat"]
    new = image_codec.encode(image_crop(source()), quality=IMAGE_Q)
    y = image_codec.decode_latent(new)[1]["y_hat"]
    if not torch.equal(y, ref):  # float g_a / h_a rounded differently on this CPU
        assert (y != ref).float().mean() <= 5e-3
        pytest.skip("latent differs from the golden one (float analysis): bytes not compared")
    assert new == data


def test_changed_weights_says_regenerate(image_codec):
    h, units = unpack(golden("image_q3.ncz"))
    other = pack(dataclasses.replace(h, weights_digest=bytes(32)),
                 [(u.type, u.checksum, u.payload) for u in units])
    with pytest.raises(pytest.fail.Exception, match="regenerate with python tests/test_golden.py"):
        with shipped_weights():
            image_codec.decode(other)


def test_reads_format_1(image_codec):
    """An image written in container format 1.0 still decodes: the header and payload its
    writer made, and (while the weights it names are the shipped ones) the golden pixels."""
    data = golden("image_q3_v1.ncz")
    r = ContainerReader(io.BytesIO(data))
    units = list(r)
    assert r.version == 1 and len(units) == 1 and len(r.header.weights_digest) == 32
    assert (r.header.width, r.header.height, r.header.quality) == (64, 48, IMAGE_Q)
    assert sha(units[0].payload)[:16] == "1c157022460f5301"
    if not r.header.digest_matches(image_codec.digest):
        pytest.skip("the 1.0 file names weights that are no longer shipped")
    assert_close_pixels(image_codec.decode(data), read_png("image_q3.png"))


def test_lossless_bytes_and_pixels():
    from codec.lossless import LosslessCodec

    c = LosslessCodec()
    data = golden("lossless.ncz")
    src = lossless_crop(source())
    assert np.array_equal(c.decode(data), src)
    assert c.encode(src) == data


@pytest.mark.parametrize("name,flags", [("video", [0, 4, 5]), ("video_residual", [0, 16, 16])])
def test_video_decode(name, flags):
    from test_video_codec import same

    data = golden(f"{name}.ncz")
    assert [u.payload[0] for u in ContainerReader(io.BytesIO(data))] == flags
    with shipped_weights():
        out = decode_video(data)
    ref = read_video_npz(f"{name}_ref.npz")
    assert len(out) == len(ref) == 3
    assert all(same(a, b) for a, b in zip(out, ref))


@pytest.mark.parametrize("version", [2, 3])
def test_reads_older_video_layouts(version):
    """A video stream of layout version 2 (before copy blocks) or 3 (before residual frames)
    still decodes to the pixels its decoder gave, while the weights it names are the
    shipped ones."""
    from codec import image
    from codec.video import load_model
    from test_video_codec import same

    data = golden(f"video_v{version}.ncz")
    h = ContainerReader(io.BytesIO(data)).header
    assert h.params["v"] == version
    intra = sha((image.WEIGHTS_DIR / f"{image.DEFAULT_MODEL}.safetensors").read_bytes())
    if not (h.digest_matches(load_model()[2]) and h.params["intra_digest"] == intra):
        pytest.skip(f"the layout-{version} file names weights that are no longer shipped")
    ref = read_video_npz(f"video_v{version}_ref.npz")
    out = decode_video(data)
    assert len(out) == len(ref) == 3
    assert all(same(a, b) for a, b in zip(out, ref))


# ---- regeneration -----------------------------------------------------------------------
def regenerate() -> None:
    from PIL import Image

    from codec.image import ImageCodec
    from codec.lossless import LosslessCodec

    GOLDEN.mkdir(exist_ok=True)
    old = digests()
    if KODAK.exists():
        src = np.asarray(Image.open(KODAK).convert("RGB"))[190:254, 170:242].copy()
    else:
        src = source()
    files = {"image_src.png": png_bytes(src)}
    img = ImageCodec()
    files["image_q3.ncz"] = img.encode(image_crop(src), quality=IMAGE_Q)
    files["image_q3.png"] = png_bytes(img.decode(files["image_q3.ncz"]))
    files["lossless.ncz"] = LosslessCodec().encode(lossless_crop(src))
    files["video.ncz"] = encode_video(video_clip(src))
    files["video_ref.npz"] = video_npz(decode_video(files["video.ncz"]))
    files["video_residual.ncz"] = encode_video(video_clip(src), VIDEO_RESIDUAL)
    files["video_residual_ref.npz"] = video_npz(decode_video(files["video_residual.ncz"]))
    new = {name: sha(roundtrip(rans_calls(n, seed=n))) for name, n in RANS.items()}
    new["container"] = sha(container_bytes()[2])
    new.update({name: sha((GOLDEN / name).read_bytes()) for name in FROZEN})
    for name, data in files.items():
        if old.get(name) != sha(data):  # keep files whose bytes did not change
            (GOLDEN / name).write_bytes(data)
        new[name] = sha(data)
    (GOLDEN / "digests.json").write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    for k in sorted(new):
        state = "unchanged" if old.get(k) == new[k] else ("new" if k not in old else "CHANGED")
        print(f"{k:16s} {state:9s} {new[k][:16]}")
    print(f"golden/: {sum(p.stat().st_size for p in GOLDEN.iterdir())} bytes")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python tests/test_golden.py --regen")
    regenerate()
