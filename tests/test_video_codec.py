"""VideoEncoder / VideoDecoder: bit-exact round trips (also across thread counts, in a
subprocess), seeking to intra frames, clear errors on desync, truncation and other weights,
and the shipped weights on a real clip."""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitstream import FormatError
from codec.errors import CodecError
from test_video_model import one_thread  # noqa: F401  (autouse fixture: one torch thread)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "video" / "compressed"


def tiny_models(seed: int = 0):
    """The same untrained tiny video + image models in any process (seeded init)."""
    from models.image import ImageModel
    from models.video import VideoModel

    torch.manual_seed(seed)
    return VideoModel("tiny"), ImageModel("tiny")


def clip(fmt: str, n: int, h: int, w: int, seed: int = 0):
    """A moving smooth pattern with noise: frames in the codec's input form."""
    rng = np.random.default_rng(seed)
    big = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4 + 6, w // 4 + 6,
                                                     generator=torch.Generator().manual_seed(seed)),
                                          scale_factor=4, mode="bilinear")[0].permute(1, 2, 0).numpy()
    frames = []
    for t in range(n):
        a = big[t:t + h, 2 * t:2 * t + w] * 220 + rng.normal(0, 4, (h, w, 3))
        a = np.clip(a, 0, 255).astype(np.uint8)
        if fmt == "rgb":
            frames.append(a)
        else:
            ch, cw = (h + 1) // 2, (w + 1) // 2
            frames.append((a[..., 0].copy(), np.ascontiguousarray(a[::2, ::2, 1][:ch, :cw]),
                           np.ascontiguousarray(a[::2, ::2, 2][:ch, :cw])))
    return frames


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(np.array_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def encode(fmt="yuv420", n=5, h=36, w=50, models=None, **kw):
    from codec.video import VideoEncoder

    vm, im = models or tiny_models()
    buf = io.BytesIO()
    recs = []
    kw.setdefault("adaptive_intra", False)  # the P-frame paths, whatever the costs of the tiny models
    kw.setdefault("skip_frames", False)
    kw.setdefault("copy_blocks", False)
    kw.setdefault("residual_frames", False)
    with VideoEncoder(buf, w, h, fmt=fmt, model=vm, intra_model=im, **kw) as enc:
        for f in clip(fmt, n, h, w):
            recs.append(enc.encode(f))
    return buf.getvalue(), recs, enc


@pytest.fixture(scope="module")
def yuv_stream():
    """6 frames of an odd-sized YUV 4:2:0 clip, intra period 3, refresh period 2, 1 thread."""
    torch.set_num_threads(1)
    return encode("yuv420", 6, 35, 50, quality=2.0, intra_period=3, refresh_period=2, threads=1)


def test_round_trip_is_bit_exact_yuv420(yuv_stream):
    from codec.video import VideoDecoder

    data, recs, enc = yuv_stream
    assert enc.frame_bytes and sum(enc.frame_bytes) < len(data)
    vm, im = tiny_models()
    dec = VideoDecoder(data, model=vm, intra_model=im)
    assert dec.header.frame_count == 6 and (dec.width, dec.height) == (50, 35)
    assert dec.header.params["refresh_period"] == 2
    out = list(dec)
    assert len(out) == 6 and all(same(a, b) for a, b in zip(out, recs))
    assert out[0][0].shape == (35, 50) and out[0][1].shape == (18, 25)


def test_round_trip_is_bit_exact_rgb():
    from codec.video import VideoDecoder

    data, recs, _ = encode("rgb", 3, 40, 66, quality=0.5, refresh_period=2)
    vm, im = tiny_models()
    out = list(VideoDecoder(io.BytesIO(data), model=vm, intra_model=im))
    assert len(out) == 3 and all(same(a, b) for a, b in zip(out, recs))
    assert out[0].shape == (40, 66, 3) and out[0].dtype == np.uint8


def test_seek_to_intra_frames(yuv_stream):
    from codec.video import VideoDecoder

    data, recs, _ = yuv_stream
    vm, im = tiny_models()
    dec = VideoDecoder(io.BytesIO(data), model=vm, intra_model=im)
    assert dec.seek(4) == 3
    out = list(dec)
    assert len(out) == 3 and all(same(a, b) for a, b in zip(out, recs[3:]))
    assert dec.seek(0) == 0 and same(dec.read(), recs[0])


def test_threads_setting_survives_numba_thread_start(yuv_stream, tmp_path):
    """numba's OpenMP thread pool, started by the first table build, resets the thread count
    torch shares; the decoder's ``threads`` must still hold after decoding."""
    (tmp_path / "v.ncz").write_bytes(yuv_stream[0])
    script = f"""
import sys, torch
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_video_codec import tiny_models
from codec.video import VideoDecoder
vm, im = tiny_models()
dec = VideoDecoder(open({str(tmp_path / 'v.ncz')!r}, 'rb'), model=vm, intra_model=im, threads=1)
list(dec)
assert torch.get_num_threads() == 1, torch.get_num_threads()
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120,
                   env={**env, "NUMBA_NUM_THREADS": "2"})


def test_cross_thread_decode_in_subprocess(yuv_stream, tmp_path):
    data, recs, _ = yuv_stream  # encoded with 1 thread
    (tmp_path / "v.ncz").write_bytes(data)
    script = f"""
import sys, numpy as np, torch
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_video_codec import tiny_models
from codec.video import VideoDecoder
vm, im = tiny_models()
dec = VideoDecoder(open({str(tmp_path / 'v.ncz')!r}, 'rb'), model=vm, intra_model=im, threads=2)
assert torch.get_num_threads() == 2
out = list(dec)
np.savez({str(tmp_path / 'out.npz')!r}, *[p for f in out for p in f])
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=120,
                   env={**os.environ, "OMP_NUM_THREADS": "2"})
    out = np.load(tmp_path / "out.npz")
    planes = [out[f"arr_{i}"] for i in range(len(out.files))]
    assert np.array_equal(len(planes), 3 * len(recs))
    assert all(np.array_equal(a, b) for a, b in zip(planes, [p for f in recs for p in f]))


def test_desync_is_a_clear_error(yuv_stream):
    from codec.video import VideoDecoder

    data = yuv_stream[0]
    vm, im = tiny_models()
    with torch.no_grad():
        vm.latent.param[0].l3.bias.add_(0.75)  # the decoder's probabilities drift
    with pytest.raises(FormatError, match="frame 1"):
        list(VideoDecoder(data, model=vm, intra_model=im))


def test_truncated_and_foreign_streams(yuv_stream):
    from codec.video import VideoDecoder

    data = yuv_stream[0]
    vm, im = tiny_models()
    with pytest.raises(FormatError):
        list(VideoDecoder(data[:len(data) - 30], model=vm, intra_model=im))
    with pytest.raises(FormatError):
        list(VideoDecoder(data[:len(data) // 3], model=vm, intra_model=im))
    bad = bytearray(data)
    bad[len(data) // 3] ^= 0x5A
    with pytest.raises(FormatError):
        list(VideoDecoder(bytes(bad), model=vm, intra_model=im))
    other = tiny_models(seed=1)[0]  # in-memory digests agree: the checksums catch it
    with pytest.raises(FormatError):
        list(VideoDecoder(data, model=other, intra_model=im))
    with pytest.raises(CodecError, match="frame format"):
        encode("yuv444")
    with pytest.raises(CodecError, match="out of the video model's range"):
        encode("yuv420", 1, quality=99)


def test_adaptive_intra_keeps_the_cheaper_frame_and_stays_decodable(monkeypatch):
    """The encoder codes a frame intra where that costs less; the costs are dictated here, in
    the order the encoder asks for them, to walk every path of the decision: P frames cheap
    against the last trial's intra cost kept untried (1, 5); the trial forced after the most
    untried frames (2, keeping P; 6, choosing intra); trials choosing intra (3) and P (4).
    The kept coding's state carries on, so the decoder, which only reads the frame types,
    reproduces every frame, and the index lists the intra frames."""
    import codec.video
    from codec.video import VideoDecoder, _Session

    #        f0 I  f1 P f2 P f2 I f3 P f3 I f4 P  f4 I f5 P f6 P f6 I
    costs = iter([1.0, 0.5, 0.5, 1.0, 2.0, 1.0, 0.95, 1.0, 0.5, 2.0, 1.0])
    monkeypatch.setattr(_Session, "rd_cost", lambda self, x, rec, n: next(costs))
    monkeypatch.setattr(codec.video, "_MAX_UNTRIED", 1)
    data, recs, enc = encode("yuv420", 7, 36, 50, quality=1.0, refresh_period=2,
                             adaptive_intra=True)
    assert next(costs, None) is None and enc.intra_frames == 3
    vm, im = tiny_models()
    dec = VideoDecoder(data, model=vm, intra_model=im)
    assert [i for i, _ in dec._r.key_units()] == [0, 3, 6]
    out = list(dec)
    assert len(out) == 7 and all(same(a, b) for a, b in zip(out, recs))
    assert dec.seek(5) == 3 and same(dec.read(), recs[3])
    assert dec.seek(6) == 6 and same(dec.read(), recs[6])
    monkeypatch.undo()
    p_only = encode("yuv420", 7, 36, 50, quality=1.0, refresh_period=2)
    assert p_only[2].intra_frames == 1 and same(p_only[1][1], recs[1])  # frame 1 kept as P
    assert same(p_only[1][2], recs[2])  # and frame 2 after its trial


def test_skip_frames_are_their_prediction_and_stay_decodable(monkeypatch):
    """A P frame is coded as a skip frame (motion only, flag 2) where that costs less; the
    costs are dictated (P, then skip, per P frame) to choose skip, skip, P, skip. The frame
    after a skip frame extracts its feature from it, so the decoder reproduces every frame; a
    layout-2 stream (no copy blocks) with them decodes the same, a layout-1 stream (no skip
    frames) still decodes, and a skip flag in one is refused."""
    import dataclasses

    from bitstream import pack, unpack
    from codec.video import VideoDecoder, _Session

    #           f0 I f1 P/skip  f2 P/skip  f3 P/skip  f4 P/skip
    costs = iter([1.0, 1.0, 0.5, 1.0, 0.5, 0.5, 1.0, 1.0, 0.5])
    monkeypatch.setattr(_Session, "rd_cost", lambda self, x, rec, n: next(costs))
    data, recs, enc = encode("yuv420", 5, 36, 50, quality=1.0, refresh_period=2, skip_frames=True)
    assert next(costs, None) is None and enc.skipped_frames == 3
    monkeypatch.undo()
    h, units = unpack(data)
    assert h.params["v"] == 4 and [u.payload[0] for u in units] == [0, 2, 2, 0, 2]
    assert max(enc.frame_bytes[i] for i in (1, 2, 4)) < enc.frame_bytes[3]  # motion only
    vm, im = tiny_models()
    out = list(VideoDecoder(data, model=vm, intra_model=im))
    assert len(out) == 5 and all(same(a, b) for a, b in zip(out, recs))

    def as_layout(d, v):
        hh, uu = unpack(d)
        return pack(dataclasses.replace(hh, params={**hh.params, "v": v}),
                    [(u.type, u.checksum, u.payload) for u in uu])

    out = list(VideoDecoder(as_layout(data, 2), model=vm, intra_model=im))
    assert len(out) == 5 and all(same(a, b) for a, b in zip(out, recs))

    with pytest.raises(FormatError, match="frame 1: bad unit flags"):
        list(VideoDecoder(as_layout(data, 1), model=vm, intra_model=im))
    old, old_recs, _ = encode("yuv420", 3, 36, 50, quality=1.0, refresh_period=2)
    out = list(VideoDecoder(as_layout(old, 1), model=vm, intra_model=im))
    assert all(same(a, b) for a, b in zip(out, old_recs))


def test_copy_blocks_and_replenished_frames_stay_decodable(monkeypatch):
    """P frames with copy blocks (flag 4, 5 with the refresh) and a replenished frame (flag 8:
    intra-coded blocks over copies of the previous frame) where they cost less; the costs are
    dictated in the order the encoder asks for them (P, copy; at a trial also intra,
    replenished) and the copy decision is a fixed block mask (the top half). The decoder
    reproduces every frame, the replenished frame's copied blocks are the previous decoded
    frame's, seeking still starts at the one intra frame; a layout-2 stream with a copy flag
    and a stream that starts at a copy-block or replenished frame are refused."""
    import dataclasses

    from bitstream import pack, unpack
    from codec.video import VideoDecoder, _Session

    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2, :] = 1.0  # blocks of rows 0-31
    monkeypatch.setattr(_Session, "copy_mask", lambda self, x, coded, src, bits: mask)
    #             f0 I  f1 P  copy  f2 P  copy  I    repl  f3 P  copy  f4 P  copy
    costs = iter([1.0, 0.8, 0.5, 1.0, 0.95, 2.0, 0.3, 0.2, 0.25, 0.5, 0.1])
    monkeypatch.setattr(_Session, "rd_cost", lambda self, x, rec, n: next(costs))
    data, recs, enc = encode("yuv420", 5, 36, 50, quality=1.0, refresh_period=2,
                             adaptive_intra=True, copy_blocks=True)
    assert next(costs, None) is None
    assert (enc.intra_frames, enc.copy_frames, enc.replenished_frames) == (1, 2, 1)
    h, units = unpack(data)
    assert h.params["v"] == 4 and [u.payload[0] for u in units] == [0, 4, 8, 0, 5]
    assert np.array_equal(recs[2][0][:32], recs[1][0][:32])  # copied from frame 1
    assert np.array_equal(recs[2][1][:16], recs[1][1][:16])
    assert not np.array_equal(recs[2][0][32:], recs[1][0][32:])  # coded
    vm, im = tiny_models()
    dec = VideoDecoder(data, model=vm, intra_model=im)
    out = list(dec)
    assert len(out) == 5 and all(same(a, b) for a, b in zip(out, recs))
    assert [i for i, _ in dec._r.key_units()] == [0]
    assert dec.seek(4) == 0 and all(same(dec.read(), r) for r in recs)
    hh, uu = unpack(data)
    v2 = pack(dataclasses.replace(hh, params={**hh.params, "v": 2}),
              [(u.type, u.checksum, u.payload) for u in uu])
    with pytest.raises(FormatError, match="frame 1: bad unit flags"):
        list(VideoDecoder(v2, model=vm, intra_model=im))
    for start in (1, 2):  # a stream starting at a copy-block or a replenished frame
        cut = pack(dataclasses.replace(hh, frame_count=len(uu) - start),
                   [(u.type, u.checksum, u.payload) for u in uu[start:]])
        with pytest.raises(FormatError, match="frame 0: a P frame without a preceding intra"):
            list(VideoDecoder(cut, model=vm, intra_model=im))


@pytest.mark.parametrize("fmt", ["yuv420", "rgb"])
def test_residual_frames_stay_decodable(monkeypatch, fmt):
    """Residual frames (flag 16: motion, then the residual to the prediction by the image
    model; 20: with copy blocks from the prediction) where an adaptive-intra trial finds them
    cheapest; they are tried only where the frame would be intra otherwise. The costs are
    dictated in the order the encoder asks for them (P, copy; at a trial intra, replenished,
    then residual, residual with copy blocks) and the copy decision is a fixed block mask (the
    top half). The decoder reproduces every frame, a stream cannot start at a residual frame,
    and a layout-3 stream with a residual flag or a stream with a bad ``residual_q`` is
    refused."""
    import dataclasses

    from bitstream import pack, unpack
    from codec.video import _REF_WEIGHT, VideoDecoder, VideoEncoder, _Candidate, _Session

    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2, :] = 1.0
    monkeypatch.setattr(_Session, "copy_mask", lambda self, x, coded, src, bits: mask)
    # the reference cost weighs the distortion term (cost minus the rate) 1 + _REF_WEIGHT
    c = _Candidate(0.9, "residual", None, bytes(45), 0, (), {})  # 45 bytes: 0.2 bpp
    with VideoEncoder(io.BytesIO(), 50, 36, model=tiny_models()[0],
                      intra_model=tiny_models()[1]) as e:
        assert e._ref_cost(c) == pytest.approx(0.9 + _REF_WEIGHT * 0.7)
    trial = [1.0, 0.9, 0.8, 0.85]  # P, copy, intra, replenished: intra would win
    costs = iter([1.0] + trial + [0.5, 0.6] + trial + [0.6, 0.4]  # f0 I, f1 residual, f2 + mask
                 + [0.3, 0.5]  # f3: P, under 0.9 x the last intra trial's cost: kept untried
                 + trial + [0.5, 0.6]  # f4 residual after a P frame
                 + [1.0, 0.9, 2.0, 2.0])  # f5: intra would lose: no residual trial, copy
    monkeypatch.setattr(_Session, "rd_cost", lambda self, x, rec, n: next(costs))
    monkeypatch.setattr(VideoEncoder, "_ref_cost", lambda self, c: c.cost)  # tested above
    data, recs, enc = encode(fmt, 6, 36, 50, quality=2.0, refresh_period=0,
                             adaptive_intra=True, copy_blocks=True, residual_frames=True)
    assert next(costs, None) is None and enc.residual_frames_coded == 3
    monkeypatch.undo()
    hh, uu = unpack(data)
    assert hh.params["v"] == 4 and [u.payload[0] for u in uu] == [0, 16, 20, 0, 16, 4]
    vm, im = tiny_models()
    q_intra = 2.0 * (im.cfg.n_quality - 1) / (vm.cfg.n_quality - 1)
    assert hh.params["residual_q"] == pytest.approx(q_intra)
    dec = VideoDecoder(data, model=vm, intra_model=im)
    out = list(dec)
    assert len(out) == 6 and all(same(a, b) for a, b in zip(out, recs))
    assert [i for i, _ in dec._r.key_units()] == [0]

    def repack(params=None, start=0):
        return pack(dataclasses.replace(hh, params={**hh.params, **(params or {})},
                                        frame_count=len(uu) - start),
                    [(u.type, u.checksum, u.payload) for u in uu[start:]])

    with pytest.raises(FormatError, match="frame 0: a P frame without a preceding intra"):
        list(VideoDecoder(repack(start=1), model=vm, intra_model=im))
    with pytest.raises(FormatError, match="frame 1: bad unit flags"):
        list(VideoDecoder(repack({"v": 3}), model=vm, intra_model=im))
    no_q = {k: v for k, v in hh.params.items() if k != "residual_q"}
    for params in ({"residual_q": -1.0}, {"residual_q": 99.0}, {"residual_q": "2"}, no_q):
        bad = pack(dataclasses.replace(hh, params={**no_q, **params}),
                   [(u.type, u.checksum, u.payload) for u in uu])
        with pytest.raises(FormatError, match="bad residual_q"):
            VideoDecoder(bad, model=vm, intra_model=im)


def test_block_mask_model_round_trip():
    """Copy masks of both kinds, in sequence (the contexts use the previous mask), decode
    exactly with a fresh model; a repeated coherent mask costs far less than random ones."""
    from bitstream import RansDecoder, RansEncoder
    from codec.video import _MaskModel

    rng = np.random.default_rng(0)
    blob = np.zeros((12, 20), np.uint8)
    blob[3:8, 5:12] = 1
    masks = [(0, rng.integers(0, 2, (12, 20)).astype(np.uint8)), (0, 1 - blob), (1, 1 - blob),
             (0, 1 - blob), (0, 1 - blob), (0, np.ones((12, 20), np.uint8)),
             (1, np.zeros((4, 4), np.uint8))]
    sizes = []
    model = _MaskModel()
    for kind, m in masks:
        enc = RansEncoder()
        assert np.array_equal(model.code(enc, kind, m.shape, m), m)
        sizes.append(len(enc.flush()))
    enc, model = RansEncoder(), _MaskModel()
    for kind, m in masks:
        model.code(enc, kind, m.shape, m)
    dec, model = RansDecoder(enc.flush()), _MaskModel()
    for kind, m in masks:
        assert np.array_equal(model.code(dec, kind, m.shape), m)
    dec.finish()
    assert sizes[4] < sizes[0] / 3 and sizes[4] < sizes[1]


def test_effort_refines_p_frames_encoder_side_only():
    """Effort 1 (SGA of each P frame's latent) changes the stream, which the unchanged
    decoder reads bit for bit; an unknown effort is refused before any coding."""
    from codec.video import VideoDecoder

    plain, _, _ = encode("yuv420", 3, 32, 48, quality=2.0)
    data, recs, _ = encode("yuv420", 3, 32, 48, quality=2.0, effort=1)
    assert data != plain
    vm, im = tiny_models()
    out = list(VideoDecoder(data, model=vm, intra_model=im))
    assert len(out) == 3 and all(same(a, b) for a, b in zip(out, recs))
    with pytest.raises(CodecError, match="effort"):
        encode("yuv420", 1, 32, 48, effort=5)


def test_effort_refines_frames_of_the_image_model():
    """Effort 1 recodes a frame that the image model codes (here the first, intra frame; with
    adaptive intra also replenished / residual frames) with an SGA-refined latent, kept only
    where its rate-distortion cost is lower; the decoder reads every frame exactly."""
    from codec.video import VideoDecoder

    for kw in ({}, {"adaptive_intra": True, "copy_blocks": True, "residual_frames": True,
                    "skip_frames": True}):
        _, recs0, e0 = encode("yuv420", 4, 32, 48, quality=2.0, **kw)
        data, recs, e1 = encode("yuv420", 4, 32, 48, quality=2.0, effort=1, **kw)
        assert not same(recs[0], recs0[0])  # the refined intra frame was kept
        cost = lambda enc, rec: enc._s.rd_cost(  # noqa: E731
            enc._s.to_packed(clip("yuv420", 1, 32, 48)[0]), enc._s.to_packed(rec).double(),
            enc.frame_bytes[0])
        assert cost(e1, recs[0]) < cost(e0, recs0[0])
        vm, im = tiny_models()
        out = list(VideoDecoder(data, model=vm, intra_model=im))
        assert len(out) == 4 and all(same(a, b) for a, b in zip(out, recs))


def test_wrong_weights_file_is_a_codec_error(tmp_path):
    from codec.video import VideoDecoder, WEIGHTS_DIR

    if not (WEIGHTS_DIR / "video_small.safetensors").exists():
        pytest.skip("no shipped video weights")
    data, _, _ = encode("yuv420", 1)
    with pytest.raises(CodecError, match="other video model weights"):
        VideoDecoder(data, intra_model=tiny_models()[1])


def test_shipped_weights_on_a_real_clip():
    from codec.video import VideoDecoder, VideoEncoder, WEIGHTS_DIR

    path = SHARED / "carphone_pristine.mp4"
    if not path.exists() or not (WEIGHTS_DIR / "video_small.safetensors").exists():
        pytest.skip("needs ../shared and the shipped video weights")
    import av

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            a = f.to_ndarray(format="yuv420p")
            h, w = f.height, f.width
            frames.append((a[:h].copy(), a[h:h + h // 4].reshape(h // 2, w // 2).copy(),
                           a[h + h // 4:].reshape(h // 2, w // 2).copy()))
            if len(frames) == 3:
                break
    cost = {}
    for adaptive in (False, True):  # the encoder's decisions (intra and skip frames) on / off
        buf = io.BytesIO()
        with VideoEncoder(buf, w, h, fmt="yuv420", quality=3.0, adaptive_intra=adaptive,
                          skip_frames=adaptive) as enc:
            recs = [enc.encode(f) for f in frames]
        out = list(VideoDecoder(buf.getvalue()))
        assert all(same(a, b) for a, b in zip(out, recs))
        for f, r in zip(frames, recs):
            mse = np.mean((f[0].astype(float) - r[0]) ** 2)
            assert 10 * np.log10(255 ** 2 / mse) > 25.0
        # the clip's rate-distortion cost as the encoder weighs it (packed 4:2:0 samples)
        lam = enc._s.model.lmbda(torch.tensor([3.0])).item()
        mse = np.mean([np.mean(np.concatenate([(a.astype(float) - b).ravel() for a, b in zip(f, r)]) ** 2)
                       for f, r in zip(frames, recs)])
        cost[adaptive] = lam * 255 ** 2 * mse + 8 * sum(enc.frame_bytes) / (w * h * len(frames))
    assert cost[True] <= cost[False]
