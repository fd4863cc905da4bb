"""The one place where images change form: numpy, Pillow or torch, in and out.

Every codec works on one internal form, an ``H x W x C`` numpy array (``uint8``; C = 1 grey,
3 RGB, 4 RGBA, which the codecs refuse with their own message; ``uint16`` grey from 16-bit
files). Everything a user may hand to :meth:`codec.ImageCodec.encode` or
:meth:`codec.LosslessCodec.encode` goes through :func:`to_array`; everything a ``decode``
returns goes through :func:`from_array`:

* numpy: in, ``H x W`` or ``H x W x C`` ``uint8`` (or ``uint16`` grey); out
  (``output="numpy"``), ``H x W x C`` ``uint8``.
* Pillow: in, any mode (``1``/``L`` grey, ``P`` expanded, ``LA``/``PA`` to RGBA,
  CMYK/YCbCr/LAB/HSV to RGB, ``I;16`` to ``uint16``; :func:`pil_to_array`); out
  (``output="pil"``), mode ``L`` or ``RGB``.
* torch: in, ``C x H x W`` or ``1 x C x H x W``, float in ``[0, 1]`` (clamped, rounded to 8
  bits) or ``uint8``, on any device; out (``output="torch"``), ``1 x C x H x W`` float32 in
  ``[0, 1]`` on ``device``.

A list or tuple of images, a 4-D torch tensor and a 4-D numpy array are batches
(:func:`to_arrays`); :func:`from_arrays` stacks a batch of same-size images into one
``N x C x H x W`` tensor. torch is imported only when a tensor is involved.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Union, overload

import numpy as np

from .errors import CodecError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["ImageLike", "ImagesLike", "Output", "to_array", "to_arrays", "from_array",
           "from_arrays", "pil_to_array", "array_to_pil", "is_tensor", "ArrayCodec"]

#: a single image in any accepted form
ImageLike = Union[np.ndarray, "Image.Image", "torch.Tensor"]
#: a batch: N x C x H x W tensor, N x H x W x C array, or a sequence of images
ImagesLike = Union[np.ndarray, "torch.Tensor", Sequence[ImageLike]]
#: the form of a decoded image
Output = Literal["numpy", "pil", "torch"]
_OUTPUTS = ("numpy", "pil", "torch")


def is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch when it is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_pil(x: object) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def pil_to_array(im: Image.Image) -> np.ndarray:
    """``H x W x C`` array of a Pillow image (the mode table of the module docstring).

    Raises :class:`CodecError` for modes without an 8-bit (or 16-bit grey) form (32-bit
    integer ``I``, float ``F``).
    """
    mode = im.mode
    if mode in ("1", "L"):
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("LA", "PA"):
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode.startswith("I;16"):
        return np.asarray(im, dtype=np.uint16).reshape(im.height, im.width, 1).copy()
    elif mode not in ("RGB", "RGBA"):
        raise CodecError(f"unsupported image mode {mode!r} (8-bit grey/RGB/RGBA or 16-bit "
                         "grey expected)")
    a = np.asarray(im, dtype=np.uint8)
    return a.reshape(a.shape[0], a.shape[1], -1).copy()


def array_to_pil(a: np.ndarray) -> Image.Image:
    """The Pillow image of an ``H x W x C`` (or ``H x W``) array: uint8 with C = 1 (mode
    ``L``), 3 (``RGB``) or 4 (``RGBA``), or uint16 grey (``I;16``)."""
    from PIL import Image

    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim == 3 and a.dtype == np.uint16 and a.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(a[:, :, 0]), mode="I;16")
    if a.ndim == 3 and a.dtype == np.uint8 and a.shape[2] in (1, 3, 4):
        return Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.shape[2] == 1 else a))
    raise CodecError(f"cannot write an image of shape {a.shape} and type {a.dtype}")


def _tensor_to_array(x: torch.Tensor) -> np.ndarray:
    import torch

    if x.ndim == 4:
        if x.shape[0] != 1:
            raise CodecError(f"a batch of {x.shape[0]} images where one image was expected "
                             "(use encode_batch)")
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise CodecError(f"a tensor image is C x H x W or 1 x C x H x W, got shape {tuple(x.shape)}")
    x = x.detach()
    if x.dtype == torch.uint8:
        u = x
    elif x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise CodecError("the image tensor holds NaN or infinite values")
        u = x.float().mul(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8)  # one new float copy
    else:
        raise CodecError(f"a tensor image is float in [0, 1] or uint8, got {x.dtype}")
    return np.ascontiguousarray(u.permute(1, 2, 0).cpu().numpy())


def to_array(image: ImageLike) -> np.ndarray:
    """The internal ``H x W x C`` array of one image (numpy, Pillow or torch).

    numpy input is returned as is when it already is ``H x W x C`` (``H x W`` gets a channel
    axis); the codecs check dtype and channel count themselves.
    """
    if isinstance(image, np.ndarray):
        return image[:, :, None] if image.ndim == 2 else image
    if _is_pil(image):
        return pil_to_array(image)  # type: ignore[arg-type]
    if is_tensor(image):
        return _tensor_to_array(image)  # type: ignore[arg-type]
    raise CodecError(f"an image is a numpy array, a PIL image or a torch tensor, "
                     f"got {type(image).__name__}")


def to_arrays(images: ImagesLike) -> list[np.ndarray]:
    """The internal arrays of a batch: a ``N x C x H x W`` tensor, a ``N x H x W x C`` array,
    or a sequence of single images. A single image (3-D tensor or array, PIL image) is a
    batch of one."""
    if isinstance(images, np.ndarray):
        return [to_array(x) for x in images] if images.ndim == 4 else [to_array(images)]
    if is_tensor(images):
        t: torch.Tensor = images  # type: ignore[assignment]
        return [to_array(x) for x in t.split(1)] if t.ndim == 4 else [to_array(t)]
    if _is_pil(images):
        return [to_array(images)]  # type: ignore[arg-type]
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return [to_array(x) for x in images]
    raise CodecError(f"a batch is a 4-D tensor or array or a sequence of images, "
                     f"got {type(images).__name__}")


def _check_output(output: str) -> None:
    if output not in _OUTPUTS:
        raise CodecError(f"output must be one of {', '.join(_OUTPUTS)}, got {output!r}")


@overload
def from_array(a: np.ndarray, output: Literal["numpy"] = ..., device: Any = ...) -> np.ndarray: ...
@overload
def from_array(a: np.ndarray, output: Literal["pil"], device: Any = ...) -> Image.Image: ...
@overload
def from_array(a: np.ndarray, output: Literal["torch"], device: Any = ...) -> torch.Tensor: ...
@overload
def from_array(a: np.ndarray, output: Output, device: Any = ...) -> np.ndarray | Image.Image | torch.Tensor: ...


def from_array(a: np.ndarray, output: Output = "numpy",
               device: Any = None) -> np.ndarray | Image.Image | torch.Tensor:
    """A decoded ``H x W x C`` uint8 array in the requested form: ``"numpy"`` (itself),
    ``"pil"`` (mode ``L`` or ``RGB``) or ``"torch"`` (``1 x C x H x W`` float32 in
    ``[0, 1]``, on ``device``, default CPU)."""
    _check_output(output)
    if output == "numpy":
        return a
    if output == "pil":
        return array_to_pil(a)
    return _arrays_to_tensor([a], device)


def _arrays_to_tensor(arrays: list[np.ndarray], device: Any) -> torch.Tensor:
    import torch

    if len({x.shape for x in arrays}) > 1:
        raise CodecError("images of different sizes cannot form one N x C x H x W tensor "
                         "(decode them one by one)")
    u = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    if device is not None:
        u = u.to(device)  # move 8-bit samples, not floats: 4x less traffic
    return u.float().div_(255.0).contiguous()


@overload
def from_arrays(arrays: list[np.ndarray], output: Literal["torch"] = ...,
                device: Any = ...) -> torch.Tensor: ...
@overload
def from_arrays(arrays: list[np.ndarray], output: Literal["numpy"],
                device: Any = ...) -> list[np.ndarray]: ...
@overload
def from_arrays(arrays: list[np.ndarray], output: Literal["pil"],
                device: Any = ...) -> list[Image.Image]: ...
@overload
def from_arrays(arrays: list[np.ndarray], output: Output,
                device: Any = ...) -> torch.Tensor | list[np.ndarray] | list[Image.Image]: ...


def from_arrays(arrays: list[np.ndarray], output: Output = "torch",
                device: Any = None) -> torch.Tensor | list[np.ndarray] | list[Image.Image]:
    """A decoded batch: ``"torch"`` stacks it into one ``N x C x H x W`` float32 tensor on
    ``device`` (all images the same size); ``"numpy"`` and ``"pil"`` give a list."""
    _check_output(output)
    if output == "torch":
        return _arrays_to_tensor(arrays, device)
    if output == "pil":
        return [from_array(a, "pil") for a in arrays]
    return list(arrays)


class ArrayCodec:
    """What every image codec of ncodec offers on top of its own ``encode`` and
    ``_decode_array`` (``bytes -> H x W x C`` uint8): ``decode`` into any form, and
    ``encode_batch`` / ``decode_batch`` (one file per image; the files are independent)."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode_array(self, data: bytes) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @overload
    def decode(self, data: bytes, output: Literal["numpy"] = ..., device: Any = ...) -> np.ndarray: ...
    @overload
    def decode(self, data: bytes, output: Literal["pil"], device: Any = ...) -> Image.Image: ...
    @overload
    def decode(self, data: bytes, output: Literal["torch"], device: Any = ...) -> torch.Tensor: ...

    def decode(self, data: bytes, output: Output = "numpy",
               device: Any = None) -> np.ndarray | Image.Image | torch.Tensor:
        """The image of a ``.ncz`` file: ``H x W x C`` uint8 (``output="numpy"``), a PIL
        image (``"pil"``, mode ``L`` or ``RGB``) or a ``1 x C x H x W`` float32 tensor in
        ``[0, 1]`` on ``device`` (``"torch"``). Bad files raise :class:`FormatError` /
        :class:`CodecError`."""
        _check_output(output)
        return from_array(self._decode_array(data), output, device)

    def encode_batch(self, images: ImagesLike, **options: Any) -> list[bytes]:
        """One ``.ncz`` file per image of a batch (see :func:`to_arrays`); ``options`` are
        those of :meth:`encode`."""
        return [self.encode(a, **options) for a in to_arrays(images)]

    @overload
    def decode_batch(self, files: Sequence[bytes], output: Literal["torch"] = ...,
                     device: Any = ...) -> torch.Tensor: ...
    @overload
    def decode_batch(self, files: Sequence[bytes], output: Literal["numpy"],
                     device: Any = ...) -> list[np.ndarray]: ...
    @overload
    def decode_batch(self, files: Sequence[bytes], output: Literal["pil"],
                     device: Any = ...) -> list[Image.Image]: ...

    def decode_batch(self, files: Sequence[bytes], output: Output = "torch",
                     device: Any = None) -> torch.Tensor | list[np.ndarray] | list[Image.Image]:
        """Decode several files: by default one ``N x C x H x W`` float tensor in ``[0, 1]``
        on ``device`` (same-size images); ``output="numpy"`` or ``"pil"`` gives a list."""
        _check_output(output)
        return from_arrays([self._decode_array(d) for d in files], output, device)
