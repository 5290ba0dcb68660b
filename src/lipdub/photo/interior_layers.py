"""A drawn mouth interior: upper and lower teeth, tongue, throat and the inner lip's shadow.

A photo of a closed mouth holds no teeth or tongue, and a network regressing real mouths paints
their average (a smooth pink-grey blur: where teeth, tongue and throat disagree between people the
mean is none of them). So the structure is drawn, in the canonical mouth canvas (``interior``):

- upper teeth hang from the upper inner lip (they stay with the upper jaw), a row of crowns
  along the arch: central incisors widest, each tooth narrower towards the corners, rounded
  incisal corners, dark gaps between them, darker towards the corners (the arch turns away from
  the light) and in the upper lip's shadow;
- lower teeth stand on the lower inner lip (they move with the chin), shorter, shown only where
  the opening is tall enough;
- a tongue rises from the floor of wider openings, the throat behind is the darkest part.

Their colours come from a small colour model fitted on real open mouths of many speakers
(``train_interior --colours``): linear maps in CIE Lab from the photo's lip and skin colours to
the colour of teeth, throat and tongue (``models/mouth_interior_colours.json``). The canvas may
be drawn at 1-3x its base size, so large faces get sharp teeth.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

COLOUR_MODEL = Path(__file__).resolve().parents[1] / "models" / "mouth_interior_colours.json"
#: Layers whose colour the colour model predicts.
LAYERS = ("teeth", "cavity", "tongue")
#: Fallback Lab colours (means of the fit's data) when the colour model file is missing.
FALLBACK_LAB = {"teeth": (62.0, 4.0, 10.0), "cavity": (14.0, 12.0, 6.0), "tongue": (40.0, 26.0, 12.0)}
#: Tooth boundaries across the canvas (u = -1..1 between the inner mouth corners), from the middle
#: out: incisors, laterals, canines, premolars; a frontal arch's teeth look narrower to the sides.
UPPER_EDGES = (0.0, 0.27, 0.48, 0.65, 0.79, 0.91, 1.0)
LOWER_EDGES = (0.0, 0.16, 0.32, 0.49, 0.66)
#: Visible crown length of each upper tooth (central incisor = 1) and the lower ones.
UPPER_LENGTH = (1.0, 0.86, 0.94, 0.8, 0.72, 0.66)
LOWER_LENGTH = (1.0, 1.0, 0.95, 0.85)


@lru_cache(maxsize=2)
def colour_model(path: Path = COLOUR_MODEL) -> dict:
    """``{layer: (3, 7) matrix}`` mapping [lip Lab, skin Lab, 1] to the layer's Lab (or {})."""
    if not Path(path).exists():
        return {}
    data = json.loads(Path(path).read_text())
    return {k: np.asarray(data["coefficients"][k], np.float64) for k in LAYERS}


def _lab(rgb: np.ndarray) -> np.ndarray:
    px = np.clip(np.asarray(rgb, np.float32).reshape(1, -1, 3), 0, 1)
    return cv2.cvtColor(px, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)


def _rgb(lab: np.ndarray) -> np.ndarray:
    px = np.asarray(lab, np.float32).reshape(1, -1, 3)
    return np.clip(cv2.cvtColor(px, cv2.COLOR_LAB2RGB).reshape(-1, 3), 0, 1)


def layer_colours(colours: np.ndarray, model: dict | None = None) -> dict[str, np.ndarray]:
    """RGB 0..1 per layer for a mouth with ``colours`` (lip RGB, skin RGB in 0..1)."""
    model = colour_model() if model is None else model
    lip, skin = _lab(colours[:3])[0], _lab(colours[3:6])[0]
    feats = np.concatenate([lip, skin, [1.0]])
    out = {}
    for k in LAYERS:
        lab = model[k] @ feats if k in model else np.array(FALLBACK_LAB[k])
        lab[0] = np.clip(lab[0], 2, 92)
        out[k] = _rgb(lab)[0]
    return out


def canvas_scale(inner_width_px: float, base_width: float = 44.0, max_scale: int = 3) -> int:
    """Canvas magnification so the drawn interior is about as sharp as the photo's pixels."""
    return int(np.clip(np.ceil(inner_width_px / base_width), 1, max_scale))


def opening_profile(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: top and bottom edge of the opening (sub-pixel) and whether it is open."""
    h = mask.shape[0]
    ys = np.arange(h, dtype=np.float32)[:, None]
    area = mask.sum(axis=0)
    open_ = area > 0.5
    safe = np.maximum(area, 1e-6)
    centre = (mask * ys).sum(axis=0) / safe
    top = np.where(open_, centre - area / 2, 0)
    bottom = np.where(open_, centre + area / 2, 0)
    return top, bottom, open_


def _teeth_row(u: np.ndarray, edges, lengths, gap_width: float):
    """Per column: crown length factor, distance to the nearest gap (in u), tooth half-width."""
    e = np.asarray(edges)
    a = np.abs(u)
    k = np.clip(np.searchsorted(e, a) - 1, 0, len(lengths) - 1)
    lo, hi = e[k], e[np.minimum(k + 1, len(e) - 1)]
    half = np.maximum((hi - lo) / 2, 1e-3)
    dist = np.minimum(a - lo, hi - a)
    length = np.asarray(lengths)[k] * (a < e[-1])
    # Rounded incisal corners: a crown shortens near its gaps (the embrasures).
    corner = np.clip(dist / (0.45 * half), 0, 1)
    length = length * (0.72 + 0.28 * np.sqrt(corner))
    gap = np.exp(-(dist / gap_width) ** 2)
    return length, gap


@lru_cache(maxsize=4)
def _grain(h: int, w: int) -> np.ndarray:
    """Fixed fine luminance texture (enamel and wet-tissue grain); fixed so it never flickers."""
    rng = np.random.default_rng(7)
    g = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    return g / max(float(g.std()), 1e-6)


def paint_interior(mask: np.ndarray, colours: np.ndarray, scale: int = 1,
                   teeth_colour: np.ndarray | None = None, model: dict | None = None) -> np.ndarray:
    """The interior ``float32 (H, W, 3)`` in 0..1 for one opening ``mask`` (canvas * ``scale``).

    ``colours``: lip RGB + skin RGB (``interior.mouth_colours``); ``teeth_colour`` overrides the
    predicted teeth colour (a photo that shows its own teeth).
    """
    from lipdub.photo.interior import CORNER_L, CORNER_R

    h, w = mask.shape
    s = float(scale)
    cols = layer_colours(colours, model)
    teeth_rgb = cols["teeth"] if teeth_colour is None else np.asarray(teeth_colour, np.float64)
    width = (CORNER_L[0] - CORNER_R[0]) * s                  # inner corner to corner
    u = ((np.arange(w) + 0.5) - (CORNER_L[0] + CORNER_R[0]) / 2 * s) / (width / 2)
    top, bottom, open_ = opening_profile(mask)
    # Lip edges are slightly noisy per column; teeth follow a smooth line.
    top = cv2.GaussianBlur(top[None].astype(np.float32), (0, 0), 1.5 * s)[0]
    bottom = cv2.GaussianBlur(bottom[None].astype(np.float32), (0, 0), 1.5 * s)[0]
    height = np.maximum(bottom - top, 0)
    tall = float(np.percentile(height[open_], 90)) if open_.any() else 0.0
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]

    # Throat: darkest in the middle, the cheeks' inner walls a little lighter and redder.
    side = np.clip(np.abs(u), 0, 1)[None] ** 2
    img = (cols["cavity"][None, None] * (0.8 + 0.5 * side[..., None])
           + cols["tongue"][None, None] * 0.18 * side[..., None])
    img = np.broadcast_to(img, (h, w, 3)).astype(np.float32).copy()

    def soft(d):  # 0 -> 1 over about a pixel (anti-aliased edge)
        return np.clip(d / max(0.8 * s, 0.8) + 0.5, 0, 1)

    # Tongue: a dome on the floor of the mouth, in openings taller than ~12 % of the width.
    t_show = float(np.clip((tall / width - 0.12) / 0.1, 0, 1))
    if t_show > 0:
        t_h = np.minimum(0.42 * height, 0.2 * width) * np.clip(1 - (u / 0.85) ** 2, 0, 1)
        t_top = bottom - t_h
        tongue = soft(y - t_top[None]) * (t_h[None] > 0.5) * t_show
        depth = np.clip((y - t_top[None]) / np.maximum(t_h[None], 1), 0, 1)
        shade = (0.62 + 0.38 * np.sqrt(depth)) * (1 - 0.25 * np.abs(u)[None])
        tongue_img = cols["tongue"][None, None] * shade[..., None]
        img = img * (1 - tongue[..., None]) + tongue_img * tongue[..., None]

    # Gaps between teeth: a fine line, about half a photo pixel wide.
    gap_w = (0.45 * s + 0.25) / (width / 2)
    # Lower teeth: on the lower lip, visible from a moderate opening on.
    l_show = float(np.clip((tall / width - 0.14) / 0.1, 0, 1))
    if l_show > 0:
        length, gap = _teeth_row(u, LOWER_EDGES, LOWER_LENGTH, gap_w)
        l_len = np.minimum(0.06 * width * length, 0.25 * height) * l_show
        l_top = bottom - l_len
        lower = soft(y - l_top[None]) * (l_len[None] > 0.3)
        arch = 1 - 0.55 * np.clip((np.abs(u) - 0.3) / 0.5, 0, 1) ** 1.3
        edge = np.clip((y - l_top[None]) / np.maximum(l_len[None], 1), 0, 1)
        # Lower teeth are lit from above like the upper ones, a little dimmer (further back).
        shade = arch[None] * (0.85 + 0.15 * edge) * (1 - 0.22 * gap[None])
        lower_img = teeth_rgb[None, None] * shade[..., None] * 0.95
        img = img * (1 - lower[..., None]) + lower_img * lower[..., None]

    # Upper teeth: hang from the upper lip, most of a small opening, a fixed crown length in a wide one.
    length, gap = _teeth_row(u, UPPER_EDGES, UPPER_LENGTH, gap_w)
    u_len = np.minimum(0.16 * width * length, 0.6 * height * (0.55 + 0.45 * length))
    u_bot = top + u_len
    upper = soft(u_bot[None] - y) * (u_len[None] > 0.3)
    arch = 1 - 0.75 * np.clip((np.abs(u) - 0.35) / 0.6, 0, 1) ** 1.2
    into = np.clip((y - top[None]) / np.maximum(u_len[None], 1), 0, 1)
    lip_shadow = 1 - 0.25 * np.exp(-(y - top[None]) / (0.03 * width))
    incisal = 1 - 0.12 * np.clip((into - 0.8) / 0.2, 0, 1)       # translucent edge
    shade = arch[None] * lip_shadow * incisal * (1 - 0.32 * gap[None])
    # The colour model gives the teeth's mean; the shading above averages ~0.9 over a crown.
    upper_img = teeth_rgb[None, None] * 1.1 * shade[..., None]
    img = img * (1 - upper[..., None]) + upper_img * upper[..., None]

    # The inner lip's own shadow along the whole edge of the opening.
    inside = (mask > 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    img *= (1 - 0.3 * np.exp(-dist / (1.2 * s)))[..., None]
    img *= (1 + 0.035 * _grain(h, w))[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 0.45 * s)
    return np.clip(img, 0, 1).astype(np.float32)
