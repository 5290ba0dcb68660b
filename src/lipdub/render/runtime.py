"""Generation-time renderer: onnxruntime, batched, no PyTorch.

``Renderer.load(avatar_dir)`` opens ``renderer.onnx`` and the mouth bank. ``render_chunk`` takes a
chunk of template frames with their boxes, their own landmarks and the wanted (target) landmarks,
and returns the rendered crops with their paste weights; ``lipdub.composite.paste`` puts them back.
Each crop is the warped reference (+ network) above the target chin and the template's own jaw,
neck and collar, bent to the target chin, below it (``join_jaw``). All per-frame work is at crop
size (or the box's own side, at most MAX_RENDER_SIDE); at the box's side, network-free, only the
window the paste reads (``paste_roi``, about half the crop) is warped and joined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipdub.errors import MissingDependencyError
from lipdub.render.condition import (CHIN_IDX, CONTEXT_IDX, WARP_IDX, crop, face_weight, int_box,
                                     masks, neck_points, network_input, shape_points, to_crop)
from lipdub.render.blend import blend_u8
from lipdub.render.colour import ring_shift, shifted
from lipdub.render.export import ONNX_FILE, read_meta
from lipdub.render.reference import BANK_FILE, ReferenceBank
from lipdub.render.warp import follow_jaw, warp


# Largest side a crop is rendered at (the bank keeps at most this resolution too).
MAX_RENDER_SIDE = 320
# Colour pre-match of the reference's face to the template over the mask's soft edge (as
# ``composite.match_colour``, restricted to the face part: the jaw/neck part is the template's own).
_RING = (0.02, 0.5)
_MAX_SHIFT = 12.0


def join_jaw(face: np.ndarray, template: np.ndarray, own_crop: np.ndarray, target_crop: np.ndarray,
             alpha: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """(R, R, 3) uint8: the rendered ``face`` (warped reference + network) above the target chin,
    the ``template`` crop bent to the target jaw below it. Landmarks are crop points at R; ``alpha``
    is the paste weight at the crop size.

    ``roi`` (y0, y1, x0, x1, see ``paste_roi``): ``face`` is only that window of the crop, and so
    is the result (``template`` stays whole: the jaw warp reads around the window).

    Below the chin the reference's own neck and collar never line up with the template's, and the
    template's old jaw edge lies inside the feathered mask edge when the chin moves: pasting the
    reference there drew a grey second jaw line over the collar (a "double chin"). Here there is
    one jaw edge, the template's, moved with the chin; the collar keeps its own pixels."""
    r = template.shape[0]
    y0, y1, x0, x1 = roi if roi is not None else (0, r, 0, r)
    pins, _ = neck_points(own_crop, target_crop, r)
    neck = follow_jaw(template, own_crop[CHIN_IDX, :2], target_crop[CHIN_IDX, :2], pins,
                      own_crop[CONTEXT_IDX, :2], roi=roi)
    # Large crops blur the seam weight at half size (smooth; a third of the cost at 320 px).
    w = face_weight(target_crop, r, half=r >= 256)[y0:y1, x0:x1]
    a = alpha if alpha.shape[0] == r else cv2.resize(alpha, (r, r), interpolation=cv2.INTER_LINEAR)
    a = a[y0:y1, x0:x1]
    ring = (a > _RING[0]) & (a < _RING[1]) & (w > 0.5)
    # uint8 throughout (a saturating-add shift, an 8-bit-weight blend): float copies of the whole
    # crop cost more than the warps.
    f = shifted(face, ring_shift(face, template[y0:y1, x0:x1], ring, _MAX_SHIFT))
    return blend_u8(f, neck, np.ascontiguousarray(w))


def paste_roi(alpha: np.ndarray, side: int, margin: int = 4) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1): the window of a crop at ``side`` that ``composite.paste`` reads for the
    paste weight ``alpha`` (its nonzero box, plus ``margin`` px for the resampling taps and the
    colour ring); None if the weight is 0 everywhere. Pixels outside it never reach the frame."""
    ys = np.flatnonzero(alpha.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(alpha.any(axis=0))
    k = side / float(alpha.shape[0])
    return (max(0, int(np.floor(ys[0] * k)) - margin), min(side, int(np.ceil((ys[-1] + 1) * k)) + margin),
            max(0, int(np.floor(xs[0] * k)) - margin), min(side, int(np.ceil((xs[-1] + 1) * k)) + margin))


@dataclass
class RenderedChunk:
    crops: np.ndarray       # (B, R, R, 3) uint8 rendered mouth crops, R = crop size or box side
                            # (at the box side: the template's own outside ``paste_roi``)
    alphas: np.ndarray      # (B, S, S) float32 paste weights at the crop size
    templates: np.ndarray   # (B, R, R, 3) uint8 template crops at the same resolution
    references: np.ndarray  # (B,) bank index used per frame


class Renderer:
    """The mouth renderer of one footage avatar: the nearest real mouth from its bank, warped to the
    target lips and chin, colour-matched and joined to the template's jaw; with a trained
    ``renderer.onnx`` (``lipdub train``, optional) its U-Net corrects the warped mouth too."""

    def __init__(self, onnx_path: Path | None, bank: ReferenceBank, threads: int | None = None,
                 batch_size: int = 8, use_network: bool = True):
        self.session = None
        if onnx_path is not None and use_network:
            try:
                import onnxruntime as ort
            except ImportError as exc:  # pragma: no cover - a base dependency
                raise MissingDependencyError("onnxruntime is missing: pip install onnxruntime") from exc
            so = ort.SessionOptions()
            # One thread, no spinning by default: the video encoder runs beside us, and on a busy
            # 2-core machine spinning worker threads made inference slower (measured 190 vs 123 fps).
            so.intra_op_num_threads = threads or 1
            so.inter_op_num_threads = 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.bank = bank
        self.size = bank.size
        self.batch_size = batch_size
        # False (or no trained network) = paste the warped real mouth as is.
        self.use_network = self.session is not None
        self._previous: int | None = None  # last reference used, for sticky retrieval

    @classmethod
    def load(cls, avatar_dir, use_network: bool = True, **kwargs) -> "Renderer":
        """The avatar's renderer: its bank (made at preparation; built now and saved for folders
        prepared before that) and, if trained and ``use_network``, its U-Net."""
        directory = Path(getattr(avatar_dir, "path", avatar_dir))
        onnx_path = directory / ONNX_FILE
        trained = use_network and onnx_path.exists()
        bank = ReferenceBank.load(directory) if (directory / BANK_FILE).exists() else None
        stale = bank is not None and (bank.points.shape[1] != len(WARP_IDX)
                                      or (trained and read_meta(directory).get("size", bank.size) != bank.size))
        if bank is None or stale:
            # Derived data (crops + landmarks of chosen frames): rebuild rather than fail.
            from lipdub.avatar_folder import Avatar
            from lipdub.render.reference import BANK_SIZE, MAX_BANK_FRAMES, bank_frames, build_bank

            avatar = avatar_dir if hasattr(avatar_dir, "landmarks") else Avatar.load(directory)
            size = read_meta(directory).get("size", BANK_SIZE) if trained else BANK_SIZE
            frames = bank.frames if stale else bank_frames(avatar, MAX_BANK_FRAMES)
            bank = build_bank(avatar, frames, int(size))
            bank.save(directory)
        return cls(onnx_path if trained else None, bank, **kwargs)

    def reset(self) -> None:
        """Forget the previous reference (start of a new, unrelated sequence)."""
        self._previous = None

    def render_chunk(self, frames, boxes: np.ndarray, template_landmarks: np.ndarray,
                     target_landmarks: np.ndarray, references: np.ndarray | None = None) -> RenderedChunk:
        """Render consecutive output frames.

        ``frames``: template frames (H, W, 3) uint8; ``boxes`` (B, 4) their mouth boxes;
        ``template_landmarks`` / ``target_landmarks`` (B, 478, 2+) in frame pixels: the mouth the
        frame shows and the mouth it should show. ``references`` forces bank indices (evaluation).
        """
        size = self.size
        b = len(frames)
        tgt_lm = np.stack([to_crop(lm, box, size) for lm, box in zip(target_landmarks, boxes)])
        own_lm = np.stack([to_crop(lm, box, size) for lm, box in zip(template_landmarks, boxes)])
        tgt_pts = np.stack([shape_points(lm) for lm in tgt_lm])
        if references is None:
            references = self.bank.sequence(tgt_pts, self._previous)
            self._previous = int(references[-1])
        # Work at the template's own box resolution when it exceeds the crop: the real mouth is
        # warped there, and only the network's (smooth) correction is upsampled.
        side = min(int_box(boxes[0])[2] - int_box(boxes[0])[0], MAX_RENDER_SIDE)
        full = self.bank.full is not None and side > size
        # Network-free at full resolution, nothing looks at the small crops: skip making them.
        small = self.session is not None or not full
        tmpl = np.stack([crop(f, box, size) for f, box in zip(frames, boxes)]) if small else None
        bank_scale = self.bank.full_size / size
        x = np.empty((b, 10, size, size), np.float32)
        alphas = np.empty((b, size, size), np.float32)
        refs_full, rois = [], []
        for i in range(b):
            r = int(references[i])
            _, band = neck_points(own_lm[i], tgt_lm[i], size)
            jaw = np.concatenate([own_lm[i][CHIN_IDX], tgt_lm[i][CHIN_IDX], band])
            hidden, alphas[i] = masks([tgt_lm[i], own_lm[i]], size, [jaw])
            if full:
                # Network-free, only the window the paste reads is warped (about half the crop).
                rois.append(paste_roi(alphas[i], side))
                roi = None if small else rois[-1]
                ref_full = None if roi is None and not small else warp(
                    self.bank.full_crop(r), self.bank.points[r] * bank_scale, tgt_pts[i] * (side / size),
                    size=side, roi=roi)
                refs_full.append(ref_full)
                ref = cv2.resize(ref_full, (size, size), interpolation=cv2.INTER_AREA) if small else None
            else:
                ref = warp(self.bank.crops[r], self.bank.points[r], tgt_pts[i])
            if self.session is not None:
                x[i] = network_input(ref, tmpl[i], tgt_lm[i], hidden)
            elif small:  # only the warped mouth is used: skip drawing the network's other inputs
                x[i, :3] = ref.transpose(2, 0, 1).astype(np.float32) / 255.0
        out = np.empty((b, 3, size, size), np.float32)
        for s in range(0, b if small else 0, self.batch_size):
            xs = x[s:s + self.batch_size]
            out[s:s + len(xs)] = self.session.run(None, {"x": xs})[0] if self.session else xs[:, :3]
        if not full:
            crops = np.clip(np.rint(out.transpose(0, 2, 3, 1) * 255), 0, 255).astype(np.uint8)
            for i in range(b):
                crops[i] = join_jaw(crops[i], tmpl[i], own_lm[i], tgt_lm[i], alphas[i])
            return RenderedChunk(crops, alphas, tmpl, np.asarray(references))
        residual = (out - x[:, :3]).transpose(0, 2, 3, 1) * 255.0 if self.session is not None else None
        crops = np.empty((b, side, side, 3), np.uint8)
        tmpl_full = np.empty((b, side, side, 3), np.uint8)
        k = side / size
        for i in range(b):
            # The template is pasted back at the box's resolution: a bilinear shrink (fast=True).
            tmpl_full[i] = crop(frames[i], boxes[i], side, fast=True)
            # Outside the paste window the crop is the template's own (never shown).
            crops[i] = tmpl_full[i]
            if rois[i] is None:
                continue
            y0, y1, x0, x1 = rois[i]
            if residual is None:  # network-free: the warped real mouth (the window) as it is
                face = refs_full[i]
            else:
                up = cv2.resize(residual[i], (side, side), interpolation=cv2.INTER_LINEAR)
                face = np.clip(np.rint(refs_full[i][y0:y1, x0:x1] + up[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
            crops[i, y0:y1, x0:x1] = join_jaw(face, tmpl_full[i], own_lm[i] * k, tgt_lm[i] * k,
                                              alphas[i], rois[i])
        return RenderedChunk(crops, alphas, tmpl_full, np.asarray(references))
