"""A synthetic *edited* clip: shots, a cutaway without a face, two people, a face that leaves.

Person A is scikit-image's astronaut (talking); person B is the same photo mirrored with a
darker, warmer skin and a narrower face, so every identity cue differs. Frames are 640x360.
"""

from __future__ import annotations

import cv2
import numpy as np

from fixtures import astronaut, talking_frames

W, H = 640, 360
# (name, frames, who is on screen) in order; "A", "B", "AB" (both), "" (no face), "A-gone"
SHOTS = (("a_alone", 20, "A"), ("cutaway", 8, ""), ("b_alone", 16, "B"), ("both", 16, "AB"),
         ("a_leaves", 30, "A-gone"))
#: frames (within the last shot) where A is out of the picture
GONE = (10, 20)


def _background(kind: int) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    palette = [(60, 90, 140), (170, 150, 90), (40, 120, 70), (120, 60, 110), (90, 90, 90)]
    base = np.array(palette[kind % len(palette)], np.float32)
    shade = 0.75 + 0.25 * np.sin(xs / (37 + 11 * kind)) * np.cos(ys / 53)
    return np.clip(base[None, None] * shade[..., None], 0, 255).astype(np.uint8)


def person_b(face: np.ndarray) -> np.ndarray:
    """A different-looking person: mirrored, darker and warmer, face 12 % narrower."""
    out = face[:, ::-1].astype(np.float32) * np.array([0.72, 0.55, 0.45], np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    narrow = cv2.resize(out, (int(w * 0.88), h), interpolation=cv2.INTER_AREA)
    pad = (w - narrow.shape[1]) // 2
    return cv2.copyMakeBorder(narrow, 0, 0, pad, w - narrow.shape[1] - pad, cv2.BORDER_REPLICATE)


# The part of the 512x512 photo pasted: head and shoulders around the mouth, so the face fills
# enough of the frame for a whole-frame detection.
CROP = (96, 20, 352, 276)


def _paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int, side: int) -> None:
    x0, y0, x1, y1 = CROP
    patch = cv2.resize(face[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + side), min(H, y + side)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - y:y1 - y, x0 - x:x1 - x]


def edited_frames() -> tuple[list[np.ndarray], list[dict]]:
    """(frames, per-frame truth: shot number, who is on screen, A's and B's face box or None)."""
    n = sum(count for _, count, _ in SHOTS)
    talk = list(talking_frames(n))
    frames, truth = [], []
    t = 0
    for shot, (name, count, who) in enumerate(SHOTS):
        for k in range(count):
            canvas = _background(shot).copy()
            a_face, b_face = talk[t], person_b(talk[(t + 5) % n])
            boxes = {"A": None, "B": None}
            if who == "A" or (who == "A-gone" and not GONE[0] <= k < GONE[1]):
                _paste(canvas, a_face, 180, 20, 300)
                boxes["A"] = (180, 20, 480, 320)
            elif who == "B":
                _paste(canvas, b_face, 200, 40, 280)
                boxes["B"] = (200, 40, 480, 320)
            elif who == "AB":
                _paste(canvas, a_face, 20, 40, 280)
                _paste(canvas, b_face, 340, 50, 260)
                boxes["A"], boxes["B"] = (20, 40, 300, 320), (340, 50, 600, 310)
            frames.append(canvas)
            truth.append({"shot": shot, "name": name, **boxes})
            t += 1
    return frames, truth


def single_face() -> np.ndarray:
    return astronaut()
