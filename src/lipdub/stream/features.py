"""Incremental audio features for streaming: the offline front end's definitions on trailing
windows (see the package docstring), with the voice-activity LSTM state carried between chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE

if TYPE_CHECKING:
    from lipdub.stream.options import StreamOptions

MEL_SECONDS = 3.0          # trailing audio the log-mel is recomputed on per step
MEL_HOP = 200              # log-mel hop (samples)


class VadStream:
    """Silero VAD probabilities, one per 512-sample chunk, with the LSTM state carried."""

    def __init__(self):
        from lipdub.audio.vad import CHUNK, CONTEXT, STATE_SHAPE, _session

        self.session = _session()
        self.chunk, self.context = CHUNK, CONTEXT
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.probs: list[float] = []

    def update(self, audio: "AudioWindow", final: bool = False) -> None:
        while True:
            c = len(self.probs)
            start, stop = c * self.chunk, (c + 1) * self.chunk
            if stop > audio.total and not (final and start < audio.total):
                return
            if start - self.context < audio.offset:  # hopelessly behind: that audio is gone
                self.probs.append(0.0)
                continue
            seg = np.zeros(self.context + self.chunk, np.float32)
            got = audio.get(start - self.context, min(stop, audio.total))
            seg[:len(got)] = got
            out, self.state = self.session.run(None, {"input": seg[None], "state": self.state,
                                                      "sr": self.sr})
            self.probs.append(float(out[0, 0]))

    def at(self, times: np.ndarray) -> np.ndarray:
        from lipdub.audio.vad import CAUSAL_LAG_SECONDS

        if not self.probs:
            return np.zeros(len(times), np.float32)
        probs = np.asarray(self.probs, np.float32)
        stamps = (np.arange(len(probs)) * self.chunk + self.chunk / 2) / SAMPLE_RATE - CAUSAL_LAG_SECONDS
        return np.clip(np.interp(times, stamps, probs), 0.0, 1.0).astype(np.float32)


class AudioWindow:
    """The received audio, of which only a trailing part is kept (``keep`` seconds)."""

    def __init__(self, keep: float):
        self.keep = int(keep * SAMPLE_RATE)
        self.buf = np.zeros(0, np.float32)
        self.offset = 0  # global index of buf[0]

    @property
    def total(self) -> int:
        return self.offset + len(self.buf)

    def append(self, x: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, x])
        excess = len(self.buf) - self.keep
        if excess > 4 * SAMPLE_RATE:  # trim in big steps, not on every chunk
            self.buf = self.buf[excess:].copy()
            self.offset += excess

    def snapshot(self) -> "AudioWindow":
        """The audio received so far, unaffected by later appends (they make new arrays)."""
        copy = AudioWindow.__new__(AudioWindow)
        copy.keep, copy.buf, copy.offset = self.keep, self.buf, self.offset
        return copy

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) in global indices; before 0 reads as silence (zeros)."""
        pre = max(0, -start)
        start = max(start, 0)
        if start < self.offset:
            raise RuntimeError("streaming audio window fell out of the kept buffer")
        seg = self.buf[start - self.offset:stop - self.offset]
        return np.concatenate([np.zeros(pre, np.float32), seg]) if pre else seg


class StreamFeatures:
    """Per-frame mel / whisper / vad for frames [a, b) from the audio received so far."""

    def __init__(self, fps: float, options: StreamOptions):
        from lipdub.audio.whisper import WhisperEncoder

        self.fps = fps
        self.options = options
        self.encoder = WhisperEncoder(threads=options.whisper_threads)
        self.vad = VadStream()

    def whisper(self, audio: AudioWindow, times: np.ndarray) -> np.ndarray:
        from lipdub.audio.whisper import STATE_SAMPLES, interpolate_states

        total = audio.total
        start = max(0, total - int(self.options.whisper_window * SAMPLE_RATE))
        start -= start % STATE_SAMPLES  # whole encoder states: positions stay on the 50 Hz grid
        # The offline front end's kind of window (unpadded, minus a silent window of its length),
        # trailing instead of centred: only the look-ahead lies right of the newest frames.
        states = self.encoder.window_states(audio.get(start, total))
        return interpolate_states(states, times - start / SAMPLE_RATE)

    def compute(self, audio: AudioWindow, a: int, b: int, final: bool):
        from lipdub.audio import AudioFeatures
        from lipdub.audio.mel import MEL_FPS, MEL_STEPS, log_mel

        times = np.arange(a, b, dtype=np.float64) / self.fps
        self.vad.update(audio, final)
        vad = self.vad.at(times)
        # log-mel on a hop-aligned trailing window covering frames [a, b) with margin
        first_col = int(np.floor(times[0] * MEL_FPS + 0.5)) - MEL_STEPS // 2
        s0 = max(0, (first_col - 8) * MEL_HOP)
        s0 = min(s0, max(0, audio.total - int(MEL_SECONDS * SAMPLE_RATE)) // MEL_HOP * MEL_HOP)
        s0 = max(s0, audio.offset + (-audio.offset) % MEL_HOP)
        spec = log_mel(audio.get(s0, audio.total)) if audio.total > s0 else np.zeros((80, 1), np.float32)
        col0 = s0 // MEL_HOP
        centres = np.floor(times * MEL_FPS + 0.5).astype(np.int64)
        cols = centres[:, None] - MEL_STEPS // 2 + np.arange(MEL_STEPS)[None, :] - col0
        cols = np.clip(cols, 0, spec.shape[1] - 1)
        mel = np.ascontiguousarray(spec[:, cols].transpose(1, 0, 2), dtype=np.float32)
        whisper = self.whisper(audio, times)
        return AudioFeatures(fps=self.fps, n_frames=b - a, duration=audio.total / SAMPLE_RATE,
                             mel=mel, whisper=whisper, vad=vad)
