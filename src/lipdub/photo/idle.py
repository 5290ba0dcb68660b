"""Idle motion for a photo: blinks, slow head motion and breathing, made with the mesh warp.

A photo has no footage, so the avatar's template frames are invented here. Every motion is a
small, smooth displacement of the face landmarks (and of rings of points around the face, moved
less and less so the warp fades into a still background), and each frame is one piecewise-affine
warp of the photo, never a warp of a warp. The landmarks of each frame are known exactly (they
are the warp's targets), so no tracking is needed afterwards.

Loop-friendly for the ping-pong walk (0..N-1, N-2..0, ...): head and breathing signals are sums of
cosines whose periods divide the template length, so their velocity is zero at both ends and the
turn-around shows no jerk; blinks keep clear of both ends, so none is cut in half at a turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from lipdub.face.geometry import inter_ocular
from lipdub.face.mesh import CHIN, FACE_OVAL, LEFT_EYE, LEFT_EYE_CORNERS, RIGHT_EYE, RIGHT_EYE_CORNERS
from lipdub.photo.meshwarp import FaceMesh, ring_halves, ring_points, warp

#: Blinks per minute are drawn around this (people at rest: about 10-20).
BLINK_RATE = 15.0
#: Shortest and longest gap between blinks (seconds).
BLINK_GAP = (2.0, 6.5)
#: Blink length range (seconds): lid closes in the first 40 %, reopens in the rest.
BLINK_LENGTH = (0.16, 0.3)
#: Where the lids meet, as a fraction of the way from the upper to the lower lid.
LID_MEET = 0.8
#: Closure from which the shut eye is covered with lid skin (see paint_lids).
LID_PAINT_FROM = 0.55
#: Weight of the head motion at each ring around the face (DEFAULT_RINGS order): the hair moves
#: with the head, the next ring half as much, the outer ring not at all.
RING_WEIGHTS = (1.0, 0.35, 0.0)


@dataclass(frozen=True)
class IdleOptions:
    seconds: float = 10.0
    fps: float = 25.0
    seed: int = 0
    blink: bool = True
    head_motion: float = 1.0     # scale of head rotation/translation (0 = still head)
    breathing: float = 1.0       # scale of the shoulders' breathing motion (0 = none)

    def __post_init__(self):
        if not self.seconds > 0 or not self.fps > 0:
            raise ValueError("seconds and fps must be positive")
        if self.head_motion < 0 or self.breathing < 0:
            raise ValueError("head_motion and breathing must be >= 0")


# ------------------------------------------------------------------------------------ signals

def blink_schedule(n_frames: int, fps: float, seed: int = 0) -> np.ndarray:
    """Lid closure per frame in 0..1 (1 = shut), irregular natural blinks, none at the ends."""
    rng = np.random.default_rng(seed)
    closure = np.zeros(n_frames, np.float32)
    duration = n_frames / fps
    mean_gap = 60.0 / BLINK_RATE
    t = rng.uniform(0.6, mean_gap)  # first blink somewhere in the first gap
    while True:
        length = rng.uniform(*BLINK_LENGTH)
        if t + length > duration - 0.4:
            break
        # Gamma-distributed gaps (shape 4): irregular, but never metronomic nor clumped.
        frames = np.arange(int(np.floor(t * fps)), int(np.ceil((t + length) * fps)) + 1)
        phase = (frames / fps - t) / length
        shut = np.where(phase < 0.4, phase / 0.4, 1 - (phase - 0.4) / 0.6)
        shut = np.clip(shut * 2.2, 0, 1)  # held fully closed for about 2 frames, as real blinks are
        ok = (frames >= 0) & (frames < n_frames)
        closure[frames[ok]] = np.maximum(closure[frames[ok]], shut[ok])
        gap = float(np.clip(rng.gamma(4.0, mean_gap / 4.0), *BLINK_GAP))
        t += length + gap
    return closure


def _cosines(n_frames: int, fps: float, rng, amplitude: float, max_cycles: int = 3) -> np.ndarray:
    """Smooth random wobble: cosines with whole cycles over the template (zero speed at the ends)."""
    t = np.arange(n_frames) / max(n_frames - 1, 1)
    total = n_frames / fps
    out = np.zeros(n_frames)
    # Periods between ~2.5 s and the template length: slow, like a person at rest.
    ks = [k for k in range(1, max_cycles + 1) if total / k >= 2.5] or [1]
    for k in ks:
        out += rng.uniform(0.5, 1.0) / k * np.cos(np.pi * k * t + rng.choice([0.0, np.pi]))
    peak = np.abs(out).max()
    return out * (amplitude / peak if peak > 0 else 0.0)


# ----------------------------------------------------------------------------------- geometry

def close_eyes(landmarks: np.ndarray, closure: float) -> np.ndarray:
    """Landmarks with both upper lids moved down to the lower ones by ``closure`` (0..1).

    In each eye's own axes (along the corners, and across): points between the lids are
    squeezed towards the line where the lids meet (irises too), the skin above follows the upper
    lid with a fading share (the brow stays nearly still), the skin below rises a little.
    """
    out = np.array(landmarks, np.float32, copy=True)
    if closure <= 0:
        return out
    # Never quite 0 px apart: the squeezed strip keeps a hair-thin, dark lash line.
    closure = min(float(closure), 0.97)
    for ring, corners in ((RIGHT_EYE, RIGHT_EYE_CORNERS), (LEFT_EYE, LEFT_EYE_CORNERS)):
        lower_chain, upper_chain = ring_halves(ring)
        a = landmarks[corners[0], :2].astype(np.float64)
        b = landmarks[corners[1], :2].astype(np.float64)
        width = float(np.linalg.norm(b - a))
        ex = (b - a) / max(width, 1e-6)
        ey = np.array([-ex[1], ex[0]])
        if ey[1] < 0:  # across-axis points down the image
            ey = -ey

        def local(p):
            d = p[..., :2] - a
            return d @ ex, d @ ey

        def profile(chain):
            u, v = local(landmarks[list(chain)].astype(np.float64))
            order = np.argsort(u)
            return u[order], v[order]

        uu, vu = profile(upper_chain)
        ul, vl = profile(lower_chain)
        u, v = local(out.astype(np.float64))
        top = np.interp(u, uu, vu)
        bottom = np.interp(u, ul, vl)
        gap = np.maximum(bottom - top, 0.0)
        meet = top + LID_MEET * gap
        # Only points near this eye: in front of/behind the corners the lid gap is 0 anyway.
        near = (u > -0.5 * width) & (u < 1.5 * width) & (v > -1.2 * width) & (v < 1.0 * width)
        # The lid skin up to the crease follows; the brow (often only ~0.4 eye widths up) stays put.
        above = np.clip((top - v) / (0.35 * width), 0, 1)
        below = np.clip((v - bottom) / (0.5 * width), 0, 1)
        dv = np.where(v <= top, (meet - top) * (1 - above) ** 2,
                      np.where(v >= bottom, (meet - bottom) * (1 - below) ** 2, meet - v))
        dv = closure * dv * near
        out[:, :2] += (dv[:, None] * ey[None]).astype(np.float32)
    return out


#: Eye openness (EAR) below which a photo's eyes count as shut, and above which they blink fully.
SHUT_EAR, OPEN_EAR = 0.13, 0.2


def blink_gain(landmarks: np.ndarray) -> float:
    """0 for a photo whose eyes are already shut (or nearly), 1 for open eyes, a ramp between."""
    from lipdub.face.geometry import eye_aspect_ratio

    ear = (float(eye_aspect_ratio(landmarks, "left")) + float(eye_aspect_ratio(landmarks, "right"))) / 2
    return float(np.clip((ear - SHUT_EAR) / (OPEN_EAR - SHUT_EAR), 0, 1))


def _rigid(points: np.ndarray, pivot: np.ndarray, angle: float, shift: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rel = points - pivot
    return np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], 1) + pivot + shift


@dataclass
class IdleTemplate:
    """Frames (warped on demand) and their exact landmarks ``(N, 478, 3)`` of an idle photo."""

    image: np.ndarray
    rest: np.ndarray               # (478, 3) the photo's own landmarks
    landmarks: np.ndarray          # (N, 478, 3) pixels
    fps: float
    mesh: FaceMesh
    ring_src: np.ndarray
    ring_dst: np.ndarray           # (N, R, 2) ring points per frame
    breath: np.ndarray             # (N,) backward vertical shoulder offset in pixels
    breath_box: tuple[int, int, int, int]
    closure: np.ndarray            # (N,) lid closure
    head: np.ndarray = field(repr=False)  # (N, 3): angle (rad), dx, dy
    open_eyes: np.ndarray = field(repr=False, default=None)  # (N, 478, 2) pose without the blink

    @property
    def n_frames(self) -> int:
        return len(self.landmarks)

    def frame(self, i: int) -> np.ndarray:
        src = self.mesh.points(self.rest, self.ring_src)
        dst = self.mesh.points(self.landmarks[i], self.ring_dst[i])
        flow = None
        if self.breath[i] != 0:
            flow = _breath_flow(self.breath_box, float(self.breath[i]))
        moved = np.abs(dst - src).max(axis=1) > 1e-3
        if not moved.any() and flow is None:
            return self.image.copy()
        out = warp(self.image, src, dst, self.mesh.triangles, extra_flow=flow,
                   moved=moved if flow is None else None,
                   box=None if flow is None else self.breath_box)
        if self.closure[i] > LID_PAINT_FROM:
            paint_lids(out, self.open_eyes[i], self.landmarks[i], float(self.closure[i]))
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)


def paint_lids(frame: np.ndarray, open_lm: np.ndarray, closed_lm: np.ndarray, closure: float) -> None:
    """Cover a (nearly) shut eye with lid skin and a thin lash line, in place.

    Squeezing the eye to a line leaves a slit of iris and lash pixels that reads as a squint; a
    shut eye shows smooth lid skin instead. The lid is inpainted from the skin around the open
    eye's outline (so it carries the socket's own shading), blended in with a soft edge, and a
    lash line is drawn as a gentle downward arc between the corners, darkest in the middle.
    """
    import cv2

    weight = float(np.clip((closure - LID_PAINT_FROM) / (0.95 - LID_PAINT_FROM), 0, 1))
    if weight <= 0:
        return
    for ring in (RIGHT_EYE, LEFT_EYE):
        poly = open_lm[list(ring), :2]
        width = float(np.linalg.norm(poly[0] - poly[len(ring) // 2]))
        pad = int(np.ceil(0.6 * width)) + 3
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + pad, [frame.shape[1], frame.shape[0]])
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        patch = np.ascontiguousarray(frame[y0:y1, x0:x1])
        local = np.round((poly - [x0, y0]) * 16).astype(np.int32)
        mask = np.zeros(patch.shape[:2], np.uint8)
        cv2.fillPoly(mask, [local], 255, cv2.LINE_AA, shift=4)
        grow = max(1, int(round(0.08 * width)))
        hole = cv2.dilate((mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=grow)
        lid = cv2.inpaint(patch, hole, max(2.0, 0.2 * width), cv2.INPAINT_TELEA).astype(np.float32)
        band = (cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=2) > 0) & (hole == 0)
        luma = patch[band].astype(np.float32).mean(axis=1)
        # The lashes' own colour: the darkest few pixels around the eye.
        dark = patch[band][luma <= np.percentile(luma, 4)].astype(np.float32).mean(axis=0)
        soft = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), max(0.7, 0.07 * width))
        alpha = (weight * np.clip(soft * 1.4, 0, 1))[..., None]
        out = patch.astype(np.float32) * (1 - alpha) + lid * alpha
        # Lash line: an arc from corner to corner through where the lids met, sagging a little,
        # thickest in the middle and tapering to the corners (drawn 4x supersampled: no stairs).
        c0, c1 = closed_lm[ring[0], :2], closed_lm[ring[len(ring) // 2], :2]
        meet = closed_lm[list(ring_halves(ring)[1]), :2].mean(axis=0)
        t = np.linspace(0, 1, 24)[:, None]
        mid = meet + np.array([0.0, 0.06 * width])
        arc = (1 - t) ** 2 * c0 + 2 * t * (1 - t) * (2 * mid - (c0 + c1) / 2) + t ** 2 * c1
        ss = 4
        lashes = np.zeros((patch.shape[0] * ss, patch.shape[1] * ss), np.float32)
        pts = (arc - [x0, y0]) * ss
        for k in range(len(pts) - 1):
            taper = np.sin(np.pi * (k + 0.5) / (len(pts) - 1)) ** 0.6
            thick = max(1, int(round(ss * 0.05 * width * taper)))
            cv2.line(lashes, tuple(np.round(pts[k] * 16).astype(int)), tuple(np.round(pts[k + 1] * 16).astype(int)),
                     1.0, thick, cv2.LINE_AA, shift=4)
        lashes = cv2.resize(lashes, (patch.shape[1], patch.shape[0]), interpolation=cv2.INTER_AREA)
        lashes = np.clip(lashes, 0, 1)[..., None] * (weight * 0.85)
        out = out * (1 - lashes) + np.minimum(dark, 0.45 * lid) * lashes
        frame[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _breath_flow(box, amount: float):
    """Backward offset lifting the shoulders by ``amount`` px, fading to 0 at the box's sides/top."""
    x0, y0, x1, y1 = box

    def flow(xs, ys):
        cx = (x0 + x1) / 2
        half = (x1 - x0) / 2
        wx = np.clip((half - np.abs(xs - cx)) / (0.4 * half), 0, 1)
        wy = np.clip((ys - y0) / (0.6 * (y1 - y0)), 0, 1)
        w = _smooth(wx) * _smooth(wy)
        return np.zeros_like(xs), (amount * w).astype(np.float32)

    return flow


def _smooth(x):
    return x * x * (3 - 2 * x)


def make_idle_template(image: np.ndarray, landmarks: np.ndarray, seconds: float = 10.0,
                       fps: float = 25.0, seed: int = 0, blink: bool = True, head_motion: float = 1.0,
                       breathing: float = 1.0) -> IdleTemplate:
    """An idle template of ``image`` (RGB uint8) whose face has ``landmarks`` (478, 3) pixels."""
    opts = IdleOptions(seconds, fps, seed, blink, head_motion, breathing)
    lm = np.asarray(landmarks, np.float32)
    h, w = image.shape[:2]
    n = max(2, int(round(opts.seconds * opts.fps)))
    rng = np.random.default_rng(opts.seed + 1)
    iod = float(inter_ocular(lm))
    mesh = FaceMesh(lm)
    ring_src = ring_points(lm, mesh.rings)
    ring_w = np.array(RING_WEIGHTS, np.float64)[mesh.ring_index][:, None]

    closure = blink_schedule(n, opts.fps, opts.seed) if opts.blink else np.zeros(n, np.float32)
    # A photo with shut or downcast eyes has nothing to blink: squeezing and repainting an eye
    # that is already closed only smears its lashes into a painted ring.
    closure = closure * blink_gain(lm)
    # Head: a couple of degrees of roll about the neck and ~1-3 px of drift, scaled by the face.
    scale = opts.head_motion * iod / 60.0
    angle = _cosines(n, opts.fps, rng, np.deg2rad(1.2) * opts.head_motion)
    dx = _cosines(n, opts.fps, rng, 1.5 * scale)
    dy = _cosines(n, opts.fps, rng, 0.8 * scale)
    # Breathing: ~4 s cycles (whole cycles over the template), the head rides on it a little.
    cycles = max(1, int(round(opts.seconds / 4.0)))
    tt = np.arange(n) / max(n - 1, 1)
    breath = opts.breathing * (iod / 60.0) * 1.2 * 0.5 * (1 - np.cos(2 * np.pi * cycles * tt))
    dy = dy - 0.4 * breath

    pivot = lm[CHIN, :2].astype(np.float64) + np.array([0.0, 0.3 * iod])
    faces = np.empty((n, lm.shape[0], 3), np.float32)
    opened = np.empty((n, lm.shape[0], 2), np.float32)
    rings = np.empty((n,) + ring_src.shape, np.float32)
    for i in range(n):
        face = close_eyes(lm, float(closure[i]))
        shift = np.array([dx[i], dy[i]])
        opened[i] = _rigid(lm[:, :2].astype(np.float64), pivot, angle[i], shift)
        face[:, :2] = _rigid(face[:, :2].astype(np.float64), pivot, angle[i], shift)
        faces[i] = face
        moved = _rigid(ring_src.astype(np.float64), pivot, angle[i], shift)
        rings[i] = ring_src + ring_w * (moved - ring_src)
    chin_y = float(lm[CHIN, 1])
    cx = float(lm[list(FACE_OVAL), 0].mean())
    half = 2.6 * iod
    box = (int(max(0, cx - half)), int(min(h - 1, chin_y + 0.5 * iod)), int(min(w, cx + half)), h)
    return IdleTemplate(image, lm, faces, opts.fps, mesh, ring_src, rings, breath.astype(np.float32),
                        box, closure, np.stack([angle, dx, dy], 1), opened)
