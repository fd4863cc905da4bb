"""``ImageCodec``: the learned image codec (MLICv2-style model of :mod:`models.image`).

``encode(image) -> bytes`` writes a complete ncodec container (kind IMAGE) whose single KEY
unit holds one rANS stream: the hyper-latent first, then the latent slice by slice, anchor
and non-anchor pass. ``decode(bytes) -> image`` mirrors it. The path that decides
probabilities runs in float64 on grid values (exact, reproducible on any thread count); the
unit's symbol checksum is verified so that a decoder whose probabilities drift stops with a
:class:`FormatError`; weights other than the encoder's give a :class:`CodecError`.

Images go in and come out as numpy ``H x W x 3`` uint8 arrays, Pillow images or torch
tensors (``C x H x W`` / ``N x C x H x W`` float in ``[0, 1]``, any device): the conversions
are those of :mod:`codec.convert`; ``encode_batch`` / ``decode_batch`` code batches.

Quality is continuous in ``[q_min, n_quality - 1]`` (``-3 .. 7``); ``bpp=`` and ``psnr=``
targets search it. ``effort`` 1 or 2 refines the latent with stochastic Gumbel annealing
(encoder only; steps in :data:`models.sga.EFFORTS`).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import FormatError, Header, RansDecoder, RansEncoder, StreamKind, UnitType, pack, unpack
from bitstream.container import ColorFormat

from .convert import ArrayCodec, ImageLike, to_array
from .errors import CodecError

__all__ = ["ImageCodec", "export_weights", "save_weights", "WEIGHTS_DIR", "DEFAULT_MODEL"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "image_small"
PAD = 64  # total down-sampling of the hyperprior
FORMAT_VERSION = 1


def _tensors_of_tables(prefix: str, t: Any) -> dict[str, torch.Tensor]:
    from models.entropy import tables_to_arrays

    return {f"{prefix}.{k}": torch.from_numpy(v) for k, v in tables_to_arrays(t).items()}


def export_weights(model: Any, dest: str | Path, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` as a safetensors file with its coder tables (so decoders everywhere use
    the very same integers) and a registry JSON beside it; returns the registry entry."""
    dest = Path(dest)
    model = model.float().eval()
    gt, zt, med = model.build_tables()
    # the transforms (float path, never deciding a probability) are stored in float16; the
    # probability path keeps float32, where its grid values are exact
    float_path = ("g_a.", "g_s.", "h_a.", "latent.lrp.")
    tensors = {k: (v.detach().half() if k.startswith(float_path) and v.is_floating_point() else
                   v.detach()).contiguous() for k, v in model.state_dict().items()}
    tensors.update(_tensors_of_tables("tables.gauss", gt))
    tensors.update(_tensors_of_tables("tables.z", zt))
    tensors["tables.z.medians"] = torch.from_numpy(med)
    return save_weights(model, tensors, dest, "ncodec-image-1", info)


def save_weights(model, tensors: dict, dest: Path, fmt: str, info: dict | None = None) -> dict:
    """Write ``tensors`` as safetensors (metadata: the model's config and ``fmt``) and the
    registry JSON beside it (id, file, sha256, parameter count, config, ``info``); returns
    the registry entry."""
    from safetensors.torch import save_file

    cfg = model.cfg.to_dict()
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest), metadata={"config": json.dumps(cfg), "format": fmt})
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    entry = {"model_id": dest.stem, "file": dest.name, "sha256": digest,
             "params": sum(p.numel() for p in model.parameters()), "config": cfg, **(info or {})}
    dest.with_suffix(".json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


class ImageCodec(ArrayCodec):
    """Encode / decode RGB images with the shipped (or a given) image model.

    ``weights``: a ``.safetensors`` file written by :func:`export_weights` (default: the
    shipped ``image_small``); ``model``: an in-memory :class:`models.image.ImageModel`
    instead (tests, training). The model runs on the CPU whatever the input's device.
    ``decode(data, output="numpy" | "pil" | "torch", device=None)`` returns RGB
    (:class:`codec.convert.ArrayCodec`).
    """

    def __init__(self, weights: str | Path | None = None, model: Any = None) -> None:
        from models.entropy import tables_from_arrays
        from models.image import ImageModel, ImageModelConfig

        if model is not None:  # an in-memory model (tests, training): tables built here
            self.model = model.float().eval()
            self.tables = self.model.build_tables()
            self.model_id, self.digest = "in-memory", hashlib.sha256(b"in-memory").digest()
        else:
            path = Path(weights) if weights else WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"
            if not path.exists():
                raise CodecError(f"image model weights not found: {path}")
            from safetensors import safe_open
            from safetensors.torch import load

            raw = path.read_bytes()
            self.digest = hashlib.sha256(raw).digest()
            self.model_id = path.stem
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
            sd = load(raw)
            self.model = ImageModel(ImageModelConfig.from_dict(json.loads(meta["config"])))
            tabs = {k: v for k, v in sd.items() if k.startswith("tables.")}
            self.model.load_state_dict({k: v for k, v in sd.items() if k not in tabs})
            self.model.eval()

            def arr(p: str) -> dict[str, np.ndarray]:
                return {k[len(p) + 1:]: tabs[k].numpy() for k in tabs
                        if k.startswith(p + ".") and not k.endswith("medians")}

            self.tables = (tables_from_arrays(arr("tables.gauss")), tables_from_arrays(arr("tables.z")),
                           tabs["tables.z.medians"].numpy().astype(np.float64))
        self.model.deterministic()
        self.n_quality = self.model.cfg.n_quality
        self.q_min = float(self.model.q_min)

    # ------------------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: ImageLike) -> np.ndarray:
        a = to_array(image)
        if a.dtype != np.uint8:
            raise CodecError(f"image must be uint8, got {a.dtype} (16-bit input is not supported)")
        if a.ndim == 3 and a.shape[2] == 1:
            a = np.repeat(a, 3, 2)
        if a.ndim != 3 or a.shape[2] != 3:
            raise CodecError(f"image must be HxWx3 (RGB) or HxW (gray), got shape {a.shape}"
                             + (" (alpha is not supported)" if a.ndim == 3 and a.shape[2] == 4 else ""))
        if a.shape[0] < 1 or a.shape[1] < 1:
            raise CodecError("image is empty")
        return a

    @staticmethod
    def _to_tensor(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float() / 255.0
        h, w = a.shape[:2]
        ph, pw = (-h) % PAD, (-w) % PAD
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    @staticmethod
    def _to_image(x: torch.Tensor, h: int, w: int) -> np.ndarray:
        x = x[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(1, 2, 0).contiguous().numpy()

    def _code(self, y: torch.Tensor, q: float) -> tuple[bytes, int, dict]:
        enc = RansEncoder()
        with torch.no_grad():
            r = self.model.compress_latent(y, enc, self.tables)
        return enc.flush(), enc.checksum, r

    def _container(self, payload: bytes, checksum: int, h: int, w: int, q: float) -> bytes:
        hdr = Header(StreamKind.IMAGE, w, h, ColorFormat.RGB, 8, model_id=self.model_id,
                     weights_digest=self.digest, quality=float(q), params={"v": FORMAT_VERSION})
        return pack(hdr, [(UnitType.KEY, checksum, payload)])

    def _reconstruct(self, y_rec: torch.Tensor, q: float, h: int, w: int) -> np.ndarray:
        with torch.no_grad():
            return self._to_image(self.model.synthesis(y_rec, q), h, w)

    def encode(self, image: ImageLike, quality: float | None = None, bpp: float | None = None,
               psnr: float | None = None, effort: int = 0) -> bytes:
        """A complete ``.ncz`` file of one image (numpy ``H x W x 3`` or ``H x W`` uint8, PIL
        image, torch ``C x H x W`` or ``1 x C x H x W``; grey is coded as RGB).

        ``quality`` in ``[q_min, n_quality - 1]`` (continuous, higher is better; default 4, or the
        top quality of a model with fewer); a ``bpp`` or
        ``psnr`` target overrides it; ``effort`` 1 or 2 refines the latent (slower encoder).
        Raises :class:`CodecError` for input it cannot code (alpha, 16-bit, wrong shape) and
        for a quality outside the model's range.
        """
        refine = None
        if effort:  # an unknown effort fails before any work
            from models.sga import ImageRefiner

            refine = ImageRefiner(self.model, *_sga_schedule(effort))
        a = self._check_image(image)
        h, w = a.shape[:2]
        x = self._to_tensor(a)
        with torch.no_grad():
            feat = self.model.g_a(x)

        def latent(q: float) -> torch.Tensor:
            y = feat / self.model._scaler(self.model.q_enc, torch.tensor([float(q)]))
            if refine is not None:  # stochastic Gumbel annealing (models.sga)
                y = refine(x, y, q)
            return y

        def trial(q: float) -> tuple[bytes, dict]:
            q = float(np.float32(q))  # the header stores float32: decode sees this value
            payload, crc, r = self._code(latent(q), q)
            data = self._container(payload, crc, h, w, q)
            return data, r

        if bpp is None and psnr is None:
            return trial(self._quality(quality))[0]
        if bpp is not None:
            if not bpp > 0:
                raise CodecError("bpp target must be positive")
            return self._search(trial, lambda d, r: _bpp(d, h, w), float(bpp), rel=0.015)
        from codec.metrics import psnr as psnr_fn

        assert psnr is not None
        if not 0 < float(psnr) < math.inf:
            raise CodecError("PSNR target must be a positive number of dB")
        return self._search(trial, lambda d, r: psnr_fn(a, self._reconstruct(r["y_rec"], _q_of(d), h, w)),
                            float(psnr), rel=0.0, at_least=True)

    def _quality(self, quality: float | None) -> float:
        """``quality`` checked against the model's range (``None``: the default)."""
        top = self.n_quality - 1
        if quality is None:
            return min(4.0, top)
        if not self.q_min <= float(quality) <= top:  # also NaN; e.g. JPEG's 0..100
            raise CodecError(f"quality {quality} is out of ncodec's range {self.q_min:g}..{top}")
        return float(quality)

    def encode_with_reconstruction(self, image: ImageLike,
                                   quality: float | None = None) -> tuple[bytes, np.ndarray]:
        """``(file bytes, the decoder's image)`` at a fixed quality: the reconstruction is
        computed on the encoder side from the coded latent (evaluation, PSNR targets)."""
        a = self._check_image(image)
        h, w = a.shape[:2]
        q = float(np.float32(self._quality(quality)))
        with torch.no_grad():
            y = self.model.analysis(self._to_tensor(a), q)
        payload, crc, r = self._code(y, q)
        return self._container(payload, crc, h, w, q), self._reconstruct(r["y_rec"], q, h, w)

    def _search(self, trial: Callable[[float], tuple[bytes, dict]],
                measure: Callable[[bytes, dict], float], target: float, rel: float,
                at_least: bool = False) -> bytes:
        """Bisection on the (monotone) quality for a target of ``measure``. With ``at_least``
        the result is the cheapest file meeting the target (or the best reachable); otherwise
        the file closest to the target (within ``rel``, or the closest found)."""
        lo, hi = self.q_min, self.n_quality - 1.0
        best: bytes | None = None
        best_err = math.inf
        ok: tuple[float, bytes] | None = None
        for _ in range(14):
            q = 0.5 * (lo + hi)
            data, r = trial(q)
            v = measure(data, r)
            if at_least:
                if v >= target and (ok is None or q < ok[0]):
                    ok = (q, data)
                if v >= target:
                    hi = q
                else:
                    lo = q
                if hi - lo < 0.02 and ok is not None:
                    break
            else:
                err = abs(v / target - 1.0)
                if err < best_err:
                    best, best_err = data, err
                if err <= rel:
                    break
                if v > target:
                    hi = q
                else:
                    lo = q
        if at_least:
            return ok[1] if ok is not None else trial(self.n_quality - 1.0)[0]
        assert best is not None  # the first trial always sets it
        return best

    # ------------------------------------------------------------------------------------
    def _decode_array(self, data: bytes) -> np.ndarray:
        """The image (``H x W x 3`` uint8) of an image file; :meth:`decode` converts it."""
        header, r = self.decode_latent(data)
        return self._reconstruct(r["y_rec"], header.quality, header.height, header.width)

    def decode_latent(self, data: bytes) -> tuple[Header, dict]:
        """Header and decoded latent (``y_hat``: the exact float64 grid values; ``y_rec``)
        of a file, with every check of :meth:`decode`."""
        header, units = unpack(bytes(data))
        if header.kind != StreamKind.IMAGE:
            raise CodecError(f"not an image stream ({StreamKind(header.kind).name.lower()})")
        if not header.digest_matches(self.digest):
            raise CodecError(f"the file was made with other model weights (model "
                             f"{header.model_id!r}, digest {header.weights_digest.hex()[:16]}...) "
                             f"than the loaded {self.model_id!r}")
        if len(units) != 1:
            raise FormatError(f"an image file holds one unit, this one {len(units)}")
        unit = units[0]
        h, w = header.height, header.width
        hp, wp = h + (-h) % PAD, w + (-w) % PAD
        dec = RansDecoder(unit.payload)
        with torch.no_grad():
            r = self.model.decompress_latent(dec, self.tables, hp // 16, wp // 16)
        dec.finish()
        if dec.checksum != unit.checksum:
            raise FormatError("symbol checksum mismatch: the decoder's probabilities differ "
                              "from the encoder's (wrong model build or corrupt data)")
        return header, r


def _sga_schedule(effort: int) -> tuple[int, float]:
    from models.sga import EFFORTS

    if effort not in EFFORTS:
        raise CodecError(f"effort {effort} is not one of 0 (no refinement), "
                         + ", ".join(map(str, EFFORTS)))
    return EFFORTS[effort]


def _q_of(data: bytes) -> float:
    return unpack(data)[0].quality


def _bpp(data: bytes, h: int, w: int) -> float:
    from codec.metrics import bpp

    return bpp(len(data), h * w)
