"""Chest X-ray preprocessing: view filter, decoding to 8-bit grey, square resize for the cache, and the
MedCLIP-style train / eval tensor transforms.

Images are decoded once into a uint8 [S, S] cache (``preprocess_image``, S = ``cxr_cache_size``); the
random augmentation runs at training time on the cached array (``train_transform``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

# MedCLIP's grey-level statistics of MIMIC-CXR (medclip/constants.py IMG_MEAN / IMG_STD), on [0, 1].
CXR_MEAN = 0.5862785803043838
CXR_STD = 0.27950088968644304
RESIZE_MODES = ("squash", "pad")
_LATERAL = {"LATERAL", "LL", "RL", "LAT", "LEFT LATERAL", "RIGHT LATERAL", "XTABLE LATERAL"}


# ----------------------------------------------------------------------------------------------------
# View filter

def _view_reason(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
        return "missing view"
    v = str(v).strip().upper()
    return "lateral view" if v in _LATERAL or "LAT" in v.split() else f"other view ({v})"


def filter_views(df: pd.DataFrame, views=("AP", "PA"), quality=None, dataset: str = "mimic_cxr",
                 view_col: str = "view", id_col: str = "record_id", stage: str = "cxr_views") -> pd.DataFrame:
    """Keep rows whose ``view`` (stripped, upper-case) is in ``views`` (paper: AP and PA only).

    Dropped rows are counted in ``quality`` by reason: "lateral view", "missing view" (empty/NaN) or
    "other view (X)" for e.g. "AP AXIAL" / "PA LLD", with record ids from ``id_col`` (else the index).
    """
    keep_set = {str(v).strip().upper() for v in views}
    norm = df[view_col].map(lambda v: None if pd.isna(v) else str(v).strip().upper())
    keep = norm.isin(keep_set)
    if quality is not None:
        quality.seen(dataset, stage, len(df))
        dropped = df.loc[~keep]
        ids = dropped[id_col] if id_col in dropped.columns else dropped.index.to_series()
        reasons = dropped[view_col].map(_view_reason)
        for reason, grp in ids.groupby(reasons.values):
            quality.exclude(dataset, stage, reason, records=grp.astype(str).tolist())
    return df.loc[keep].copy()


# ----------------------------------------------------------------------------------------------------
# Decoding

def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Min-max rescale to 0..255 (a deliberate, documented conversion for >8-bit data; flat -> zeros)."""
    a = arr.astype(np.float64)
    lo, hi = np.nanmin(a), np.nanmax(a)
    if not np.isfinite(lo) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _load_dicom(path: Path) -> np.ndarray:
    import pydicom
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:
        raise DataError(path, f"unreadable DICOM ({type(e).__name__}: {e})") from e
    try:
        arr = ds.pixel_array
    except (RuntimeError, NotImplementedError) as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        if not any(w in str(e).lower() for w in ("plugin", "missing", "dependenc", "handler")):
            raise DataError(path, f"corrupt compressed DICOM pixel data ({type(e).__name__}: {e})") from e
        raise DataError(path, f"cannot decode compressed DICOM pixel data (transfer syntax {ts}); install a "
                              f"decoder plugin, e.g. `pip install pylibjpeg pylibjpeg-libjpeg` ({e})") from e
    except Exception as e:
        raise DataError(path, f"corrupt DICOM pixel data ({type(e).__name__}: {e})") from e
    photo = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if photo not in ("MONOCHROME1", "MONOCHROME2"):  # RGB / YBR (pydicom converts YBR to RGB by default)
        arr = np.asarray(Image.fromarray(np.asarray(arr, np.uint8)).convert("L")) if arr.ndim == 3 else arr
    bits = int(getattr(ds, "BitsStored", 8) or 8)
    if arr.dtype == np.uint8 or (bits <= 8 and arr.min() >= 0 and arr.max() <= 255):
        out = np.asarray(arr, np.uint8)
        return 255 - out if photo == "MONOCHROME1" else out
    a = arr.astype(np.float64)
    slope, inter = float(getattr(ds, "RescaleSlope", 1) or 1), float(getattr(ds, "RescaleIntercept", 0) or 0)
    a = a * slope + inter
    if photo == "MONOCHROME1":  # high values are dark: invert before rescaling
        a = a.max() + a.min() - a
    return _to_uint8(a)


def load_image(path) -> np.ndarray:
    """Decode a CXR (JPG/PNG via PIL, DICOM via pydicom) to a uint8 [H, W] grey array, bright = dense.

    - 8-bit grey is returned verbatim; RGB/RGBA/palette -> grey with PIL's ITU-R 601 luma (alpha dropped).
    - 16-bit or 32-bit grey (PNG mode I;16 / I, float F) is rescaled to 0..255 by min-max. This is a
      deliberate conversion (the cache and the encoders are 8-bit), not silent truncation.
    - DICOM: MONOCHROME1 is inverted so that bone is bright; >8-bit data get the modality rescale
      (slope/intercept) then min-max; no VOI windowing. A missing decoder for compressed pixel data gives
      a DataError that says what to install.
    - Missing, corrupt or truncated files raise DataError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if _is_dicom(path):
        return _load_dicom(path)
    try:
        with Image.open(path) as im:
            im.load()  # forces full decoding: truncated files fail here (LOAD_TRUNCATED_IMAGES stays False)
            mode = im.mode
            if mode == "L":
                return np.asarray(im, dtype=np.uint8).copy()
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                return _to_uint8(np.asarray(im))
            if mode in ("LA", "RGBA", "PA"):
                im = im.convert("RGBA").convert("RGB")
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------------------------------
# Square resize for the cache

def pad_to_square(img: np.ndarray, value: int = 0) -> np.ndarray:
    """Centre the image on a square canvas of zeros (keeps the aspect ratio)."""
    h, w = img.shape[:2]
    s = max(h, w)
    out = np.full((s, s), value, dtype=img.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def resize(img: np.ndarray, size: int, mode: str = "squash") -> np.ndarray:
    """uint8 [H, W] -> uint8 [size, size]. squash: stretch to the square (MedCLIP); pad: keep aspect,
    zero-pad to a square, then resize. PIL's bicubic filter widens its support when shrinking, so
    downscaling is antialiased."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"cxr_resize must be one of {RESIZE_MODES}, got {mode!r}")
    if mode == "pad":
        img = pad_to_square(img)
    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img, dtype=np.uint8)
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    return np.array(im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0), dtype=np.uint8)


def preprocess_image(path, size: int = 256, mode: str = "squash") -> np.ndarray:
    """Decode + square resize: the uint8 [size, size] array stored in the cache."""
    return resize(load_image(path), size, mode)


# ----------------------------------------------------------------------------------------------------
# Torch transforms (on cached uint8 [H, W] arrays)

def _to_tensor(img):
    import torch
    if isinstance(img, np.ndarray):
        a = np.ascontiguousarray(img)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())  # read-only memmaps/PIL views
    else:
        t = img
    if t.ndim == 2:
        t = t[None]
    return t


def _finish(t, mean: float, std: float, channels: int):
    from torchvision.transforms.v2 import functional as F
    import torch
    t = F.to_dtype(t, torch.float32, scale=True) if t.dtype == torch.uint8 else t.float()
    t = (t - mean) / std
    return t.expand(channels, -1, -1).contiguous() if channels != t.shape[0] else t


class CXRTrainTransform:
    """MedCLIP-style augmentation: colour jitter (brightness, contrast 0.2), affine (rotation +-10 deg,
    translation 6.25 %, scale 0.8-1.1), resize to the cache side, random crop to ``size``, float [0, 1],
    normalise with MedCLIP's MIMIC-CXR mean/std, repeat to 3 channels for timm encoders.

    Horizontal flips are OFF by default (``hflip=0``; MedCLIP uses 0.5) because laterality is part of the
    text ("left pleural effusion") and of cardiac anatomy. Random parameters are drawn from ``generator``
    when given (``t(img, generator=g)``), else from torch's global RNG (seeded per DataLoader worker),
    so results are reproducible either way.
    """

    def __init__(self, size: int = 224, cache_size: int | None = 256, degrees: float = 10.0,
                 translate: float = 0.0625, scale=(0.8, 1.1), brightness: float = 0.2, contrast: float = 0.2,
                 hflip: float = 0.0, mean: float = CXR_MEAN, std: float = CXR_STD, channels: int = 3):
        self.size, self.cache_size = int(size), int(cache_size or size)
        self.degrees, self.translate, self.scale = degrees, translate, tuple(scale)
        self.brightness, self.contrast, self.hflip = brightness, contrast, hflip
        self.mean, self.std, self.channels = mean, std, channels

    def __call__(self, img, generator=None):
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        def u(lo, hi):  # one uniform draw from the generator (or the global RNG)
            return float(lo + (hi - lo) * torch.rand((), generator=generator))

        t = _to_tensor(img)
        if self.brightness:
            t = F.adjust_brightness(t, u(1 - self.brightness, 1 + self.brightness))
        if self.contrast:
            t = F.adjust_contrast(t, u(1 - self.contrast, 1 + self.contrast))
        h, w = t.shape[-2:]
        angle = u(-self.degrees, self.degrees)
        tx, ty = round(u(-self.translate, self.translate) * w), round(u(-self.translate, self.translate) * h)
        t = F.affine(t, angle=angle, translate=[tx, ty], scale=u(*self.scale), shear=[0.0, 0.0],
                     interpolation=InterpolationMode.BILINEAR)
        if (h, w) != (self.cache_size, self.cache_size):
            t = F.resize(t, [self.cache_size, self.cache_size], antialias=True)
        if self.cache_size > self.size:
            top = int(torch.randint(0, self.cache_size - self.size + 1, (), generator=generator))
            left = int(torch.randint(0, self.cache_size - self.size + 1, (), generator=generator))
            t = F.crop(t, top, left, self.size, self.size)
        elif self.cache_size < self.size:
            t = F.resize(t, [self.size, self.size], antialias=True)
        if self.hflip and u(0, 1) < self.hflip:
            t = F.horizontal_flip(t)
        return _finish(t, self.mean, self.std, self.channels)


class CXREvalTransform:
    """Deterministic: resize the whole image to ``size`` (no centre crop, which would cut the
    costophrenic angles), float [0, 1], normalise, 3 channels."""

    def __init__(self, size: int = 224, mean: float = CXR_MEAN, std: float = CXR_STD, channels: int = 3):
        self.size, self.mean, self.std, self.channels = int(size), mean, std, channels

    def __call__(self, img, generator=None):
        from torchvision.transforms.v2 import functional as F
        t = _to_tensor(img)
        if tuple(t.shape[-2:]) != (self.size, self.size):
            t = F.resize(t, [self.size, self.size], antialias=True)
        return _finish(t, self.mean, self.std, self.channels)


def train_transform(size: int = 224, cache_size: int | None = 256, **kwargs) -> CXRTrainTransform:
    """uint8 [H, W] (numpy or tensor) -> float32 [3, size, size]; see CXRTrainTransform."""
    return CXRTrainTransform(size, cache_size, **kwargs)


def eval_transform(size: int = 224, **kwargs) -> CXREvalTransform:
    """uint8 [H, W] -> float32 [3, size, size], no randomness; see CXREvalTransform."""
    return CXREvalTransform(size, **kwargs)
