"""The inside of an opened mouth for a photo, painted in a canonical mouth canvas.

A photo of a closed mouth holds no teeth or tongue, so they are painted: the inner-lip opening is
mapped to a fixed ``CANVAS_W x CANVAS_H`` canvas (times a scale) by a similarity that puts the
inner mouth corners (78, 308) at fixed points. Three painters share that canvas:

- ``"drawn"`` (the default, ``interior_layers``): upper and lower teeth, tongue and throat drawn
  as layers, coloured by a colour model fitted on real open mouths of many speakers;
- ``"model"``: a small U-Net trained on real open-mouth crops (``train_interior``); it regresses
  the average mouth, a smooth pink-grey blur with no teeth to see;
- ``"procedural"``: a dark cavity with a band of upper teeth (the U-Net's starting point).

``benchmarks/photo_interior_eval.py`` compares them on held-out speakers. Everything the data
extraction and the runtime share lives here, so both canonicalise and measure colours identically.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from lipdub.face.mesh import LIPS_INNER, LIPS_OUTER

CANVAS_W, CANVAS_H = 64, 48
#: Canvas positions of the inner mouth corners (78 = subject's right, 308 = left).
CORNER_R = (10.0, 18.0)
CORNER_L = (54.0, 18.0)
#: Input channels: opening mask, lip RGB, skin RGB, x and y ramps, the procedural interior RGB
#: (the network learns a correction of it: a sane mouth from the first step of training on).
N_INPUT = 12
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
ONNX_PATH = MODELS_DIR / "mouth_interior.onnx"
MANIFEST_PATH = MODELS_DIR / "mouth_interior_manifest.json"


def canonical_matrix(landmarks: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``(2, 3)`` similarity from frame pixels to the canvas (times ``scale``) for this mouth."""
    a = landmarks[78, :2].astype(np.float64)
    b = landmarks[308, :2].astype(np.float64)
    src_v = b - a
    dst_v = np.subtract(CORNER_L, CORNER_R) * scale
    s = np.linalg.norm(dst_v) / max(np.linalg.norm(src_v), 1e-6)
    ang = np.arctan2(dst_v[1], dst_v[0]) - np.arctan2(src_v[1], src_v[0])
    c, sn = s * np.cos(ang), s * np.sin(ang)
    lin = np.array([[c, -sn], [sn, c]])
    t = np.asarray(CORNER_R) * scale - lin @ a
    return np.concatenate([lin, t[:, None]], axis=1)


def opening_mask(landmarks: np.ndarray, matrix: np.ndarray, shape=(CANVAS_H, CANVAS_W)) -> np.ndarray:
    """Anti-aliased inner-lip polygon ``float32 (H, W)`` in 0..1, in the coordinates of ``matrix``."""
    pts = landmarks[list(LIPS_INNER), :2].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def mouth_colours(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``float32 (6,)`` in 0..1: median lip colour and median skin colour around the lips.

    Medians over the lip ring (outer minus inner polygon, eroded so no teeth or cavity leak in)
    and over a band of skin just outside the lips: what the lighting and skin tone look like.
    """
    outer = landmarks[list(LIPS_OUTER), :2]
    width = float(np.linalg.norm(landmarks[61, :2] - landmarks[291, :2]))
    pad = int(0.5 * width) + 3
    x0, y0 = np.maximum(np.floor(outer.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(outer.max(0)).astype(int) + pad, [frame.shape[1], frame.shape[0]])
    patch = frame[y0:y1, x0:x1]
    off = np.array([x0, y0])
    lips = np.zeros(patch.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(outer - off).astype(np.int32)], 1)
    inner = np.zeros_like(lips)
    cv2.fillPoly(inner, [np.round(landmarks[list(LIPS_INNER), :2] - off).astype(np.int32)], 1)
    inner = cv2.dilate(inner, np.ones((3, 3), np.uint8), iterations=max(1, int(0.04 * width)))
    ring = (lips > 0) & (inner == 0)
    grown = cv2.dilate(lips, np.ones((3, 3), np.uint8), iterations=max(2, int(0.15 * width)))
    skin = (grown > 0) & (cv2.dilate(lips, np.ones((3, 3), np.uint8), iterations=2) == 0)
    out = []
    for sel in (ring, skin):
        px = patch[sel] if sel.sum() >= 4 else patch.reshape(-1, 3)
        out.append(np.median(px, axis=0) / 255.0)
    return np.concatenate(out).astype(np.float32)


def model_input(masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Network input ``float32 (B, 12, H, W)`` from masks ``(B, H, W)`` and colours ``(B, 6)``."""
    b = len(masks)
    x = np.empty((b, N_INPUT, CANVAS_H, CANVAS_W), np.float32)
    x[:, 0] = masks
    x[:, 1:7] = colours[:, :, None, None]
    x[:, 7] = np.linspace(-1, 1, CANVAS_W, dtype=np.float32)[None, None, :]
    x[:, 8] = np.linspace(-1, 1, CANVAS_H, dtype=np.float32)[None, :, None]
    x[:, 9:12] = np.transpose(procedural_interior(masks, colours), (0, 3, 1, 2))
    return x


def procedural_interior(masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A plain interior ``(B, H, W, 3)`` in 0..1: dark lip-tinted cavity, upper teeth, tongue.

    Teeth are a band under the upper lip, brightest in the middle and fading to the cavity
    towards the corners (they turn away from the light); the tongue shows only in wide openings.
    """
    out = np.empty(masks.shape + (3,), np.float32)
    ys = np.arange(CANVAS_H, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, CANVAS_W, dtype=np.float32)[None, :]
    for k, (mask, col) in enumerate(zip(masks, colours)):
        lip, skin = col[:3], col[3:]
        rows = np.flatnonzero(mask.max(axis=1) > 0.5)
        top, bottom = (rows[0], rows[-1]) if len(rows) else (CANVAS_H // 2, CANVAS_H // 2)
        height = max(bottom - top, 1)
        cavity = np.broadcast_to(0.16 * lip + 0.02, mask.shape + (3,))
        # Teeth are lit like the face but never whiter than ~0.85: a glowing band looks pasted.
        teeth_colour = np.clip(0.7 * skin.mean() + 0.3, 0, 0.85) * np.array([1.0, 0.96, 0.88])
        band = min(0.3 * height, 4.5)
        teeth = np.clip((top + band - ys) / 1.2, 0, 1) * np.clip(1.3 - 1.1 * np.abs(xs), 0, 1)
        teeth = (teeth * np.clip(height / 4.0, 0, 1))[..., None]  # barely parted: little shows
        tongue = np.clip((ys - (bottom - 0.3 * height)) / (0.25 * height), 0, 1)
        tongue = (tongue * np.clip((height - 8) / 8.0, 0, 1) * np.clip(1 - np.abs(xs), 0, 1))[..., None]
        img = cavity * (1 - teeth) + teeth_colour * teeth
        img = img * (1 - 0.7 * tongue) + (0.5 * lip) * 0.7 * tongue
        out[k] = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7)
    return out


class InteriorModel:
    """Paints mouth interiors: ``"drawn"`` (``interior_layers``: teeth, tongue, throat, coloured
    by the fitted colour model), ``"model"`` (the older U-Net, onnxruntime) or ``"procedural"``
    (a flat cavity with a teeth band, the fallback of the U-Net)."""

    def __init__(self, onnx_path: Path | None = ONNX_PATH, threads: int = 1, drawn: bool = False):
        self.session = None
        self.drawn = drawn
        self.manifest: dict = {}
        if onnx_path is not None and Path(onnx_path).exists():
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            manifest = Path(onnx_path).with_name(MANIFEST_PATH.name)
            if manifest.exists():
                self.manifest = json.loads(manifest.read_text())
        if drawn:
            from lipdub.photo.interior_layers import COLOUR_MODEL

            if COLOUR_MODEL.exists():
                self.manifest = json.loads(COLOUR_MODEL.read_text())

    @property
    def kind(self) -> str:
        if self.drawn:
            return "hybrid" if self.session is not None else "drawn"
        return "model" if self.session is not None else "procedural"

    def scale_for(self, landmarks: np.ndarray) -> int:
        """Canvas magnification for this mouth: the drawn interior matches the photo's sharpness;
        the U-Net and the procedural interior work at the base size."""
        if not self.drawn:
            return 1
        from lipdub.photo.interior_layers import canvas_scale

        return canvas_scale(float(np.linalg.norm(landmarks[78, :2] - landmarks[308, :2])))

    def paint(self, masks: list[np.ndarray], colours: np.ndarray, scales: list[int],
              teeth_colours: list | None = None) -> list[np.ndarray]:
        """Canvas interiors (``float32 (H*s, W*s, 3)`` in 0..1), one per mask."""
        if self.drawn:
            from lipdub.photo.interior_layers import paint_interior

            teeth_colours = teeth_colours or [None] * len(masks)
            out = [paint_interior(m, c, s, t) for m, c, s, t in zip(masks, colours, scales, teeth_colours)]
            if self.session is not None:
                # Hybrid: the drawn detail on the U-Net's broad shading and colour.
                base = [cv2.resize(m, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA) for m in masks]
                net = self._run(np.array(base, np.float32), np.asarray(colours, np.float32))
                out = [_swap_low_frequencies(d, n, m, s) for d, n, m, s in zip(out, net, masks, scales)]
            return out
        return list(self(np.array(masks), np.asarray(colours)))

    def _run(self, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
        y = self.session.run(None, {"x": model_input(masks, colours)})[0]
        return np.transpose(y, (0, 2, 3, 1))

    def __call__(self, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
        """Canvas interiors ``float32 (B, H, W, 3)`` in 0..1 at the base canvas size."""
        masks = np.asarray(masks, np.float32)
        colours = np.asarray(colours, np.float32)
        if self.drawn:
            return np.array(self.paint(list(masks), colours, [1] * len(masks)))
        if self.session is None:
            return procedural_interior(masks, colours)
        return self._run(masks, colours)


def _swap_low_frequencies(detail: np.ndarray, broad: np.ndarray, mask: np.ndarray, scale: int,
                          sigma: float = 2.5) -> np.ndarray:
    """``detail`` with its low frequencies (inside ``mask``) replaced by those of ``broad``
    (any size; resized to ``detail``'s)."""
    h, w = detail.shape[:2]
    broad = cv2.resize(broad, (w, h), interpolation=cv2.INTER_LINEAR)
    m = (mask > 0.5).astype(np.float32)
    k = sigma * scale

    def low(x):
        return cv2.GaussianBlur(x * m[..., None], (0, 0), k) / (cv2.GaussianBlur(m, (0, 0), k)[..., None] + 1e-4)

    return np.clip(detail + low(broad) - low(detail), 0, 1).astype(np.float32)


#: Which interior the photo renderer paints by default: the drawn one. On the held-out interior
#: benchmark (benchmarks/photo_interior_eval.py) it is closer to real mouths than the procedural
#: one; the U-Net scores well on average colour but paints every opening as the same smooth
#: pink-grey blur (the mean of its data), with no teeth or tongue to see.
#: LIPDUB_MOUTH_INTERIOR=model|procedural switches.
DEFAULT_INTERIOR = "drawn"


@lru_cache(maxsize=4)
def load_interior(kind: str | None = None) -> InteriorModel:
    """A shared interior: ``"drawn"``, ``"procedural"``, ``"model"`` (the shipped ONNX;
    MissingDependencyError without it) or ``"auto"`` (the default); default
    $LIPDUB_MOUTH_INTERIOR or ``DEFAULT_INTERIOR``."""
    import os

    from lipdub.errors import MissingDependencyError

    kind = kind or os.environ.get("LIPDUB_MOUTH_INTERIOR") or DEFAULT_INTERIOR
    if kind == "auto":
        kind = DEFAULT_INTERIOR
    if kind not in ("drawn", "hybrid", "procedural", "model"):
        raise ValueError(f"mouth interior must be drawn, hybrid, procedural, model or auto, not {kind!r}")
    if kind in ("model", "hybrid") and not ONNX_PATH.exists():
        raise MissingDependencyError(f"mouth interior model {ONNX_PATH} is missing; reinstall lipdub "
                                     "or run python -m lipdub.photo.train_interior")
    if kind in ("drawn", "hybrid"):
        return InteriorModel(ONNX_PATH if kind == "hybrid" else None, drawn=True)
    return InteriorModel(None if kind == "procedural" else ONNX_PATH)
