"""Vectorised chest X-ray renderer: anatomy whose geometry carries the latent findings.

Every image of a batch is drawn at once on (B, H, W) float32 grids in body coordinates (x: image
left = patient right, y: down), so rendering a few thousand images takes seconds. The heart width over
the thorax width equals the latent cardiothoracic ratio (x1.08 on AP views), effusions fill the lung
bases and blunt the costophrenic angles, opacities are textured blobs inside the lungs, a pacemaker is
a bright generator with a lead ending in the right ventricle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

THORAX_HALF = 0.75          # half the thorax width in body units (outer lung edges at about +-0.75)
AP_MAGNIFICATION = 1.08     # AP views project the (anterior) heart larger

# finding -> default flag; the renderer reads every key from the per-image dicts
FINDINGS = ("cardiomegaly", "edema", "effusion_left", "effusion_right", "pneumonia", "atelectasis",
            "nodule", "pneumothorax", "fracture", "pleural_other", "device", "covid", "viral")


@dataclass(frozen=True)
class Domain:
    """Scanner / site appearance: the nuisance a model must ignore, different per dataset."""
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0
    noise: float = 0.02
    blur: float = 0.0
    marker: tuple[float, float] | None = (0.08, 0.1)   # (x, y) of a bright side marker, fraction of size
    jitter: float = 1.0                                 # scale of position / rotation / exposure variation


DOMAINS = {
    "mimic": Domain(),
    "chexpert": Domain(contrast=1.1, brightness=-0.03, gamma=0.9, noise=0.03, blur=0.6, marker=(0.88, 0.08)),
    "covid": Domain(contrast=0.9, brightness=0.05, gamma=1.15, noise=0.015, blur=0.9, marker=None),
    "rsna": Domain(contrast=1.05, brightness=0.0, gamma=1.05, noise=0.025, blur=0.4, marker=(0.9, 0.9)),
    "openi": Domain(contrast=0.95, brightness=0.02, gamma=0.85, noise=0.01, blur=1.1, marker=(0.1, 0.88)),
}


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells) linear-interpolation weights: a separable bilinear upsampling as two matmuls."""
    x = np.clip((np.arange(n) + 0.5) * cells / n - 0.5, 0, cells - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    m = np.zeros((n, cells), np.float32)
    m[np.arange(n), lo] += 1 - (x - lo)
    m[np.arange(n), hi] += x - lo
    return m


def _smooth_field(rng, b, h, w, cells=8):
    """Low-frequency random texture in [-1, 1] (bilinear upsampling of a coarse random grid)."""
    coarse = rng.uniform(-1, 1, (b, cells, cells)).astype(np.float32)
    mh, mw_t = _interp_matrix(h, cells), np.ascontiguousarray(_interp_matrix(w, cells).T)
    rows = (mh @ coarse.transpose(1, 0, 2).reshape(cells, b * cells))            # (h, b*cells), one GEMM
    rows = np.ascontiguousarray(rows.reshape(h, b, cells).transpose(1, 0, 2)).reshape(b * h, cells)
    return (rows @ mw_t).reshape(b, h, w)


def _sig(x):
    """Soft step with a sigmoid's slope at 0 (a clipped linear ramp: much cheaper than exp)."""
    return np.clip(0.25 * x + 0.5, 0.0, 1.0)


def _ellipse(u, v, cx, cy, ax, ay, edge=0.03):
    """Soft ellipse mask (1 inside); centres/axes broadcast as (B, 1, 1). Uses 1 - r^2 ~ 2 (1 - r)."""
    r2 = ((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2
    return _sig((1 - r2) * (0.5 * np.minimum(ax, ay) / edge))


def _col(p, key, dtype=np.float32):
    return np.asarray([float(d.get(key, 0.0)) for d in p], dtype=dtype)[:, None, None]


def _grid(rng, b, h, w, d: Domain, ap):
    """Body coordinates after per-image shift, rotation and scale (patient position nuisance)."""
    j = np.arange(w, dtype=np.float32)[None, None, :]
    i = np.arange(h, dtype=np.float32)[None, :, None]
    u0 = (j - w / 2) / (w / 2)
    v0 = (i - h / 2) / (w / 2)
    dx = rng.normal(0, 0.04 * d.jitter, (b, 1, 1)).astype(np.float32)
    dy = rng.normal(0.02, 0.04 * d.jitter, (b, 1, 1)).astype(np.float32)
    th = np.deg2rad(rng.normal(0, 3 * d.jitter, (b, 1, 1))).astype(np.float32)
    s = (rng.uniform(0.88, 1.0, (b, 1, 1)) * np.where(ap, 0.96, 1.0)).astype(np.float32)
    uu, vv = u0 - dx, v0 - dy
    u = (uu * np.cos(th) + vv * np.sin(th)) / s
    v = (-uu * np.sin(th) + vv * np.cos(th)) / s
    return u, v


def render_frontal(params: list[dict], h: int, w: int, rng: np.random.Generator, domain: Domain,
                   return_opacity: bool = False):
    """Render B frontal (PA/AP) chest films -> uint8 (B, H, W) [, opacity maps for bounding boxes]."""
    b = len(params)
    ap = _col(params, "ap") > 0
    u, v = _grid(rng, b, h, w, domain, ap)
    ctr = _col(params, "ctr") * np.where(ap, AP_MAGNIFICATION, 1.0)
    tex = _smooth_field(rng, b, h, w, 10)
    fine = _smooth_field(rng, b, h, w, 28)
    fine2 = _smooth_field(rng, b, h, w, 48)

    body = 0.05 + 0.40 * _ellipse(u, v, 0.0, 0.15, 0.95, 1.25, 0.05)            # soft tissue vs air
    # lungs: two ellipses cut by the hemidiaphragm domes (right dome higher)
    dome_r = 0.52 - 0.14 * np.clip(1 - ((u + 0.42) / 0.36) ** 2, 0, 1)
    dome_l = 0.56 - 0.14 * np.clip(1 - ((u - 0.42) / 0.36) ** 2, 0, 1)
    env_r, env_l = _ellipse(u, v, -0.41, -0.02, 0.34, 0.66), _ellipse(u, v, 0.41, 0.0, 0.33, 0.66)
    lung = np.maximum(env_r * _sig((dome_r - v) / 0.012), env_l * _sig((dome_l - v) / 0.012))
    # mediastinum and heart: dense soft tissue that hides the lung behind it
    med_w = 0.10 + 0.05 * _sig((-0.45 - v) / 0.05)
    med = _sig((med_w - np.abs(u)) / 0.015) * _sig((0.55 - v) / 0.02)
    width = ctr * 2 * THORAX_HALF          # horizontal heart extent = ctr * thorax width
    heart = _ellipse(u, v, 0.17 * width, 0.2, width / 2, 0.27, 0.015) * _sig((0.5 - v) / 0.02)
    dense = np.maximum(med, heart)
    # fluid in the costophrenic recesses: replaces aerated lung, meniscus rising laterally
    fluid = np.zeros_like(lung)
    for side, cx, dome, env in (("effusion_right", -0.41, dome_r, env_r), ("effusion_left", 0.41, dome_l, env_l)):
        e = _col(params, side)
        level = dome - e - 0.25 * e * np.clip(np.abs(u - cx) / 0.34, 0, 1.2)
        fluid = np.maximum(fluid, _sig((v - level) / 0.015) * np.maximum(env, lung) * (e > 0))
    # opacities (pneumonia, COVID-like, atelectasis) fill alveoli: a fraction of the lung turns dense
    opac = np.clip(_blobs(params, "opacities", u, v, tex) + _blobs(params, "covid_blobs", u, v, tex, 0.6)
                   + _blobs(params, "atelectasis_bands", u, v, 0.0, band=True), 0, 1)
    edema = _col(params, "edema")
    haze = edema * (0.75 * np.exp(-(((np.abs(u) - 0.15) / 0.3) ** 2 + ((v - 0.05) / 0.38) ** 2))
                    + 0.15 * np.abs(fine)) + _col(params, "viral") * (0.3 + 0.25 * np.abs(fine2))
    air = lung * (1 - dense) * (1 - fluid) * (1 - 0.95 * opac) * (1 - np.clip(haze, 0, 0.8))
    hil = np.exp(-(((np.abs(u) - 0.2) / 0.12) ** 2 + ((v + 0.02) / 0.15) ** 2))
    marks = 0.05 * fine * (0.4 + hil)
    ribs = 0.06 * np.clip(3 * np.sin(2 * np.pi * (v * 5.2 + 1.1 * u ** 2)) - 2, 0, 1)
    img = body - 0.32 * air + (marks + ribs) * lung + 0.10 * hil * lung * (1 - dense) + 0.02 * tex
    img += 0.10 * dense + 0.05 * _sig((0.06 - np.abs(u)) / 0.01) * (0.5 + 0.5 * np.sin(v * 32))   # spine
    img -= 0.12 * _sig((0.03 - np.abs(u)) / 0.006) * _sig((-0.35 - v) / 0.02)                      # trachea
    clav = np.abs(v - (-0.7 + 0.25 * (np.abs(u) - 0.35) ** 2)) < 0.025
    img += 0.15 * (clav & (np.abs(u) > 0.08) & (np.abs(u) < 0.75))
    img += _blobs(params, "nodules", u, v, 0.0, sharp=True) * 0.3 * lung
    img += _blobs(params, "fracture_spots", u, v, 0.0, sharp=True) * 0.3
    po = _col(params, "pleural_other")
    img += 0.18 * po * lung * _sig((-0.45 - v) / 0.02) * (1 - _sig((-0.38 - v) / 0.02))
    img = _pneumothorax(params, img, u, v, lung * (1 - dense), marks)
    img = _devices(params, img, u, v)
    out = _finish(img, rng, domain, h, w, _col(params, "exposure") + 1.0)
    return (out, opac * lung) if return_opacity else out


def _blobs(params, key, u, v, tex, amp=1.0, band=False, sharp=False):
    """Sum of elliptical blobs listed per image as (x, y, rx, ry, strength) tuples, in [0, ~1]."""
    out = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
    for k, d in enumerate(params):
        for (x, y, rx, ry, s) in d.get(key, ()):
            if sharp:
                m = _ellipse(u[k], v[k], x, y, rx, ry, 0.005)
            else:
                r2 = ((u[k] - x) / rx) ** 2 + ((v[k] - y) / ry) ** 2
                m = np.exp(-1.5 * r2) if band else np.exp(-(r2 ** 1.5))      # flat-topped consolidation
            t = 1.0 if np.isscalar(tex) else (0.8 + 0.3 * tex[k])
            out[k] += amp * s * m * t
    return out


def _pneumothorax(params, img, u, v, lung, marks):
    """Lateral apical air without lung markings, bounded by a thin visceral pleural line."""
    for k, d in enumerate(params):
        side = d.get("pneumothorax", 0)
        if not side:
            continue
        sx = -1 if side < 0 else 1
        edge = 0.62 - 0.25 * np.clip(-v[k] - 0.1, 0, 1)             # pleural line, curving apically
        air = _sig((sx * u[k] - edge) / 0.01) * _sig((0.05 - v[k]) / 0.05) * lung[k]
        line = np.exp(-((sx * u[k] - edge) / 0.008) ** 2) * _sig((0.05 - v[k]) / 0.05) * lung[k]
        img[k] = img[k] - air * (marks[k] + 0.06) + 0.12 * line
    return img


def _devices(params, img, u, v):
    """Pacemaker: bright generator below the left clavicle and a lead curving into the heart."""
    for k, d in enumerate(params):
        if not d.get("device"):
            continue
        gx, gy = d.get("device_xy", (0.5, -0.6))
        img[k] += 0.9 * _ellipse(u[k], v[k], gx, gy, 0.09, 0.065, 0.004)
        tx, ty = d.get("lead_tip", (0.1, 0.42))
        t = np.linspace(0, 1, 40, dtype=np.float32)
        cx, cy = 0.05, -0.4
        px = (1 - t) ** 2 * gx + 2 * (1 - t) * t * cx + t ** 2 * tx
        py = (1 - t) ** 2 * gy + 2 * (1 - t) * t * cy + t ** 2 * ty
        d2 = np.min((u[k][..., None] - px) ** 2 + (v[k][..., None] - py) ** 2, axis=-1)
        img[k] += 0.7 * np.exp(-d2 / 0.00012)
    return img


def _finish(img, rng, domain: Domain, h, w, exposure):
    """Exposure, scanner contrast/gamma, blur, marker and quantum noise -> uint8."""
    if domain.blur > 0:
        img = ndimage.gaussian_filter(img, (0, domain.blur, domain.blur))
    img = np.clip((img - 0.05) * exposure * domain.contrast + 0.05 + domain.brightness, 0, 1)
    img = img ** domain.gamma
    if domain.marker is not None:
        mx, my = int(domain.marker[0] * w), int(domain.marker[1] * h)
        r = max(2, w // 40)
        img[:, max(0, my - r):my + r, max(0, mx - r):mx + r] = 0.95
    img = img + rng.normal(0, domain.noise, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_lateral(params: list[dict], h: int, w: int, rng: np.random.Generator, domain: Domain) -> np.ndarray:
    """Render B lateral views: anterior heart (size from ctr), posterior spine, posterior fluid."""
    b = len(params)
    u, v = _grid(rng, b, h, w, domain, np.zeros((b, 1, 1), bool))
    tex = _smooth_field(rng, b, h, w, 10)
    ctr = _col(params, "ctr")
    img = 0.05 + 0.42 * _ellipse(u, v, 0.0, 0.1, 0.85, 1.2, 0.05)
    dome = 0.5 - 0.1 * np.clip(1 - (u / 0.7) ** 2, 0, 1)
    lung = _ellipse(u, v, 0.0, -0.05, 0.62, 0.7) * _sig((dome - v) / 0.015)
    img = img - 0.27 * lung + 0.03 * tex
    img += 0.32 * _sig((0.09 - np.abs(u - 0.62)) / 0.01) * (0.8 + 0.2 * np.sin(v * 30))   # spine
    img += 0.30 * _ellipse(u, v, -0.3 + 0.1 * (ctr - 0.45), 0.28, 0.25 + 0.8 * (ctr - 0.45), 0.25, 0.02)
    eff = np.maximum(_col(params, "effusion_left"), _col(params, "effusion_right"))
    img += 0.28 * _sig((v - (dome - eff - 0.3 * eff * np.clip(u / 0.6, 0, 1))) / 0.02) * lung * (eff > 0)
    img += 0.25 * np.clip(_blobs(params, "opacities_lat", u, v, tex), 0, 1) * lung
    return _finish(img, rng, domain, h, w, _col(params, "exposure") + 1.0)


def sample_geometry(rng: np.random.Generator, f: dict, ctr: float, ap: bool) -> dict:
    """Per-image drawing parameters for a finding dict (random placement of blobs, devices...)."""
    p = {"ctr": ctr, "ap": float(ap), "exposure": float(rng.normal(0, 0.08))}
    if f.get("edema"):
        p["edema"] = float(rng.uniform(0.6, 1.0))
    if f.get("effusion"):
        side = rng.choice(["left", "right", "both"], p=[0.3, 0.3, 0.4])
        for s in ("left", "right"):
            if side in (s, "both"):
                p[f"effusion_{s}"] = float(rng.uniform(0.12, 0.35))
    opac = []
    if f.get("pneumonia"):
        for _ in range(int(rng.integers(1, 3))):
            sx = rng.choice([-1, 1])
            opac.append((sx * rng.uniform(0.3, 0.55), rng.uniform(-0.1, 0.35), rng.uniform(0.12, 0.22),
                         rng.uniform(0.12, 0.22), rng.uniform(0.8, 1.2)))
    p["opacities"] = opac
    p["opacities_lat"] = [(rng.uniform(-0.3, 0.3), y, rx, ry, s) for (_, y, rx, ry, s) in opac]
    if f.get("covid"):
        p["covid_blobs"] = [(sx * rng.uniform(0.45, 0.62), rng.uniform(0.0, 0.45), rng.uniform(0.12, 0.2),
                             rng.uniform(0.12, 0.22), rng.uniform(0.8, 1.2))
                            for sx in (-1, 1) for _ in range(int(rng.integers(2, 4)))]
    if f.get("viral"):
        p["viral"] = float(rng.uniform(0.7, 1.0))
    if f.get("atelectasis"):
        p["atelectasis_bands"] = [(rng.choice([-1, 1]) * rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.38),
                                   rng.uniform(0.15, 0.22), 0.03, 1.0)]
    if f.get("nodule"):
        p["nodules"] = [(rng.choice([-1, 1]) * rng.uniform(0.25, 0.55), rng.uniform(-0.4, 0.2),
                         rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.05), 1.0)]
    if f.get("fracture"):
        p["fracture_spots"] = [(rng.choice([-1, 1]) * rng.uniform(0.68, 0.74), rng.uniform(-0.3, 0.3),
                                0.03, 0.02, 1.0)]
    if f.get("pleural_other"):
        p["pleural_other"] = 1.0
    if f.get("pneumothorax"):
        p["pneumothorax"] = int(rng.choice([-1, 1]))
    if f.get("device"):
        p["device"] = 1
        p["device_xy"] = (float(rng.uniform(0.4, 0.55)), float(rng.uniform(-0.68, -0.55)))
        p["lead_tip"] = (float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.26, 0.36)))
    return p


def measure_ctr(img: np.ndarray) -> float:
    """Rough cardiothoracic ratio from a frontal image: heart run / lung span on rows near the base.

    Used by tests and notebooks to show that the pixels (not only the metadata) carry cardiomegaly.
    """
    x = ndimage.gaussian_filter(img.astype(np.float32), 1.5)
    h, w = x.shape
    ratios = []
    for r in range(int(0.58 * h), int(0.72 * h), max(1, h // 64)):
        row = x[r]
        body = row > np.percentile(row, 5) + 10
        if body.sum() < w // 3:
            continue
        lo, hi = np.percentile(row[body], 15), np.percentile(row[w // 2 - w // 10: w // 2 + w // 10], 60)
        dark = row < (lo + hi) / 2
        idx = np.flatnonzero(dark)
        if len(idx) < 4:
            continue
        span = idx[-1] - idx[0]
        centre = (idx[0] + idx[-1]) // 2
        bright = ~dark
        left = centre
        while left > idx[0] and bright[left - 1]:
            left -= 1
        right = centre
        while right < idx[-1] and bright[right + 1]:
            right += 1
        if bright[centre] and span > 0:
            ratios.append((right - left) / span)
    return float(np.median(ratios)) if ratios else float("nan")
