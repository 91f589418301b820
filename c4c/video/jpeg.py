"""Decoding the JPEG frames of a frame store: on the CPU (simplejpeg, else Pillow) or in batches on a GPU.

Every decoder gives uint8 RGB pixels within 1 level of Pillow's (all use libjpeg-turbo's or nvJPEG's
accurate IDCT; tests/test_jpeg_decode.py checks it). Figures: bench/README.md, ``bench_decode.py``.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CPU_DECODERS = ("auto", "simplejpeg", "pillow")  # auto: simplejpeg when installed, else Pillow

_simplejpeg = None  # the module once imported; False when it is not installed


def _load_simplejpeg():
    global _simplejpeg
    if _simplejpeg is None:
        try:
            import simplejpeg
            _simplejpeg = simplejpeg
        except ImportError:
            log.debug("simplejpeg is not installed: JPEG frames are decoded with Pillow")
            _simplejpeg = False
    return _simplejpeg or None


def cpu_decoder(name: str = "auto") -> str:
    """The CPU decoder ``name`` resolves to: ``simplejpeg`` or ``pillow``."""
    if name not in CPU_DECODERS:
        raise ValueError(f"unknown JPEG decoder {name!r}; choose one of {', '.join(CPU_DECODERS)}")
    if name == "pillow":
        return "pillow"
    if _load_simplejpeg() is None:
        if name == "simplejpeg":
            raise ImportError("simplejpeg is not installed (pip install simplejpeg)")
        return "pillow"
    return "simplejpeg"


def _bytes(row) -> bytes | np.ndarray:
    return row if isinstance(row, (bytes, bytearray)) else np.ascontiguousarray(row, np.uint8)


def _pillow(row) -> np.ndarray:
    from PIL import Image

    data = row if isinstance(row, (bytes, bytearray)) else np.asarray(row, np.uint8).tobytes()
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:  # told the format: no probing of other plugins
        img.load()
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _simple(row) -> np.ndarray:
    return _simplejpeg.decode_jpeg(_bytes(row), colorspace="RGB", fastdct=False, fastupsample=False)


def decode_jpegs(rows: Sequence, decoder: str = "auto") -> np.ndarray:
    """Decode JPEG frames (1-D uint8 arrays or bytes) to uint8 ``[n, H, W, 3]`` RGB, straight into one array.

    ``decoder``: ``auto`` (simplejpeg when installed, else Pillow), ``simplejpeg`` or ``pillow``.
    ValueError when the frames differ in size.
    """
    one = _simple if cpu_decoder(decoder) == "simplejpeg" else _pillow
    out = None
    for i, row in enumerate(rows):
        frame = one(row)
        if out is None:
            out = np.empty((len(rows),) + frame.shape, np.uint8)
        elif frame.shape != out.shape[1:]:
            raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 {out.shape[2]}x{out.shape[1]}")
        out[i] = frame
    return out


def torchvision_decoder_available() -> bool:
    """True when ``torchvision.io.decode_jpeg`` can be imported (it decodes batches; on CUDA with nvJPEG)."""
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception:  # a torchvision built without its image extension raises more than ImportError
        return False
    return True


def _writable(row) -> np.ndarray:
    """A writable 1-D uint8 array of a frame's bytes (torch refuses read-only buffers)."""
    arr = np.frombuffer(row, np.uint8) if isinstance(row, (bytes, bytearray)) else np.ascontiguousarray(row, np.uint8)
    return arr if arr.flags.writeable else arr.copy()


def decode_jpegs_torch(rows: Sequence, device: str | torch.device = "cuda") -> torch.Tensor:
    """Decode JPEG frames as one batch with torchvision (nvJPEG when ``device`` is CUDA): uint8 ``[n, H, W, 3]``
    RGB on ``device``, the layout of :func:`decode_jpegs`."""
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.from_numpy(_writable(r)) for r in rows]
    if not data:
        raise ValueError("no frames to decode")
    with warnings.catch_warnings():  # torchvision >= 0.29 warns that decode_jpeg will move to torchcodec
        warnings.simplefilter("ignore")
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)  # n x [3, H, W]
    shape = images[0].shape
    for i, img in enumerate(images):
        if img.shape != shape:
            raise ValueError(f"frame {i} is {img.shape[2]}x{img.shape[1]}, frame 0 {shape[2]}x{shape[1]}")
    return torch.stack(images).permute(0, 2, 3, 1).contiguous()  # [n, H, W, 3]


FRAME_DECODERS = ("cpu", "cuda", "auto")  # where stored JPEG frames are decoded


def frame_decoder(name: str, device: str | torch.device) -> str:
    """Where to decode frames for a model on ``device``: ``cpu`` or ``cuda``.

    ``auto`` picks ``cuda`` when the model runs on CUDA and torchvision's decoder is available, else ``cpu``;
    ``cuda`` falls back to ``cpu`` (with a warning) when either is missing.
    """
    if name not in FRAME_DECODERS:
        raise ValueError(f"unknown frame decoder {name!r}; choose one of {', '.join(FRAME_DECODERS)}")
    if name == "cpu":
        return "cpu"
    on_cuda = str(device).startswith("cuda")
    if on_cuda and torchvision_decoder_available():
        return "cuda"
    if name == "cuda":
        log.warning("frame decoder cuda needs a CUDA model and torchvision.io.decode_jpeg: decoding on the CPU")
    return "cpu"
