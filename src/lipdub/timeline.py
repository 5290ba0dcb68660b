"""The output timeline: which template frame each output frame shows, and how much of the
dubbed mouth it shows.

- ``template_order`` / ``output_order``: the walk over the template (in place when the audio is
  as long as the video: output frame i shows template frame i; past its end ping-pong or wrap);
- ``TemplateView``: the part of a template a generation walks, landmarks optionally smoothed;
- ``dub_weights`` (fades, silence) and ``frame_weights`` (times the template frame's own
  ``dub_weight``: 0 where it has no usable face), ``blend``.

``options`` are ``lipdub.pipeline.GenerateOptions`` (only their fields are read here).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lipdub.errors import InputError

LOOP_MODES = ("pingpong", "wrap")
#: keep_silence: frames over which the dubbed mouth ramps in/out at the edges of speech.
SILENCE_RAMP = 3


def template_order(n_out: int, n_template: int, loop: str = "pingpong", start: int = 0,
                   step: float = 1.0) -> np.ndarray:
    """Template frame under each output frame.

    ``loop="pingpong"``: 0, 1, ..., M-1, M-2, ..., 1, 0, 1, ... (no jump); ``"wrap"``: 0, ..., M-1,
    0, 1, ... The walk starts at template frame ``start`` (same direction as from 0) and advances
    ``step`` template frames per output frame (template fps / output fps)."""
    if loop not in LOOP_MODES:
        raise ValueError(f"loop must be one of {', '.join(LOOP_MODES)}, got {loop!r}")
    pos = int(start) + np.floor(np.arange(n_out) * float(step) + 1e-9).astype(np.int64)
    if n_template <= 1:
        return np.zeros(n_out, np.int64)
    if loop == "wrap":
        return (pos % n_template).astype(np.int64)
    period = 2 * (n_template - 1)
    k = pos % period
    return np.where(k < n_template, k, period - k).astype(np.int64)


class TemplateView:
    """The part of a template avatar a generation walks: its first ``n_frames`` frames, with the
    landmarks optionally smoothed over time (``smooth`` frames, centred). Everything else (path,
    fps, size, manifest...) is the avatar's own."""

    def __init__(self, avatar, n_frames: int | None = None, smooth: int = 0):
        self.avatar = avatar
        n = avatar.n_frames if n_frames is None else max(1, min(int(n_frames), avatar.n_frames))
        self.n_frames = n
        self.landmarks = smooth_track(np.asarray(avatar.landmarks[:n]), smooth)
        self.boxes = np.asarray(avatar.boxes[:n])

    def __getattr__(self, name):
        return getattr(self.avatar, name)

    def _check(self, index) -> int:
        index = int(index)
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} is outside the template's 0..{self.n_frames - 1}")
        return index

    def frame(self, index: int) -> np.ndarray:
        return self.avatar.frame(self._check(index))

    def iter_frames(self, indices=None, **kwargs) -> Iterator[np.ndarray]:
        order = range(self.n_frames) if indices is None else [self._check(i) for i in indices]
        return self.avatar.iter_frames(order, **kwargs)

    def __len__(self) -> int:
        return self.n_frames


def smooth_track(track: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of a landmark track ``(M, ...)`` over ``window`` frames (edges
    repeat the end frames); ``window`` <= 1 returns the track unchanged."""
    track = np.asarray(track)
    if window <= 1 or len(track) <= 1:
        return track
    left = (window - 1) // 2
    right = window - 1 - left
    padded = np.concatenate([np.repeat(track[:1], left, 0), track, np.repeat(track[-1:], right, 0)])
    csum = np.cumsum(padded.astype(np.float64), axis=0)
    csum = np.concatenate([np.zeros_like(csum[:1]), csum])
    return ((csum[window:] - csum[:-window]) / window).astype(track.dtype)


def output_order(n_out: int, template, options, fps: float | None = None) -> np.ndarray:
    """Template frame under each output frame, as ``options`` ask (loop, start frame, frame rate)."""
    fps = fps or options.fps or template.fps
    return template_order(n_out, template.n_frames, options.loop, options.start_frame,
                          step=float(template.fps) / float(fps))


def dub_weights(n_out: int, options, features=None) -> np.ndarray | None:
    """Per output frame, how much of the dubbed mouth shows (0 = the template frame untouched,
    1 = fully dubbed): ``fade_in``/``fade_out`` ramps and, with ``keep_silence``, 0 where the
    audio's voice activity says silence (ramping over ``SILENCE_RAMP`` speech frames). None
    when every frame is fully dubbed."""
    i = np.arange(n_out, dtype=np.float64)
    w = np.ones(n_out, np.float64)
    if options.fade_in > 0:
        w = np.minimum(w, i / options.fade_in)
    if options.fade_out > 0:
        w = np.minimum(w, (n_out - 1 - i) / options.fade_out)
    if options.keep_silence:
        from lipdub.audio import speech_mask

        if features is None or getattr(features, "vad", None) is None:
            raise InputError("keep_silence needs the audio's voice activity (features with vad)")
        speech = speech_mask(np.asarray(features.vad)[:n_out])
        dist = np.full(n_out, np.inf)  # frames to the nearest silent frame
        last = -np.inf
        for k in range(n_out):
            last = k if not speech[k] else last
            dist[k] = k - last
        last = np.inf
        for k in range(n_out - 1, -1, -1):
            last = k if not speech[k] else last
            dist[k] = min(dist[k], last - k)
        w = np.minimum(w, np.clip(dist / SILENCE_RAMP, 0.0, 1.0))
    w = np.clip(w, 0.0, 1.0)
    return None if bool((w >= 1.0).all()) else w.astype(np.float32)


def frame_weights(template, order: np.ndarray, options,
                  features=None) -> np.ndarray | None:
    """Per output frame, how much of the dubbed mouth shows: the template frame's own dub weight
    (0 where it has no usable face of the dubbed person: those frames pass through untouched)
    times ``dub_weights`` (fades, silence). None when every frame is fully dubbed."""
    w = dub_weights(len(order), options, features)
    own = getattr(template, "dub_weight", None)
    if own is not None and not bool((np.asarray(own) >= 1.0).all()):
        face = np.asarray(own, np.float32)[order]
        w = face if w is None else np.minimum(w, face)
    return w


def blend(template_frame: np.ndarray, dubbed: np.ndarray, weight: float) -> np.ndarray:
    """``template_frame`` where weight is 0, ``dubbed`` where 1, a linear mix in between."""
    if weight <= 0:
        return template_frame
    if weight >= 1:
        return dubbed
    import cv2

    return cv2.addWeighted(dubbed, float(weight), template_frame, 1.0 - float(weight), 0.0)
