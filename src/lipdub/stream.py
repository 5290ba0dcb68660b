"""Real-time streaming: PCM chunks in, timestamped lip-synced frames (and their audio) out.

``stream(avatar, chunks, options)`` reads an iterable of 16 kHz mono chunks (float32 in [-1, 1] or
int16, any size from 10 ms up) and yields a :class:`StreamFrame` for output frame ``i`` (showing
``t_i = i / fps``) as soon as audio up to ``t_i + lookahead`` has arrived. Nothing waits for the
end of the utterance; memory is bounded (audio older than the feature windows is dropped).

Incremental features (the offline front end's definitions, on trailing windows):

- log-mel: recomputed on the last ``MEL_SECONDS`` of audio, aligned to the 200-sample hop, so
  every column not touching the window edges equals the offline one;
- voice activity: Silero's LSTM stepped once per new 512-sample chunk with its state kept;
- Whisper tiny.en encoder: re-run at every processing step on the last ``whisper_window`` s of audio.
  ``whisper_pad=True`` pads that window to 30 s as offline does (about 0.35 s per call on this
  CPU: too slow for a live step); the default runs the encoder on the unpadded window, which
  CTranslate2 accepts and which costs about 10-30 ms for the default 3 s, at the price of states that
  differ somewhat from the offline ones (the benchmark reports the resulting mouth correlation).

Motion: the shipped model reads ``receptive_field`` frames each side; each step runs it on the
new frames plus left context and whatever right context has arrived (the look-ahead), the same
``left``/``right`` chunk protocol ``pipeline.target_chunks`` uses; missing future context is
edge-replicated by the model. Silence (VAD) gates the mouth to the avatar's neutral, closed
shape while the template keeps its ping-pong idle motion.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE

MEL_SECONDS = 3.0          # trailing audio the log-mel is recomputed on per step
MEL_HOP = 200              # log-mel hop (samples)


@dataclass(frozen=True)
class StreamOptions:
    lookahead: float = 0.2         # seconds of audio past a frame's instant before it is made
    step: float = 0.08             # process at most every this much new audio (seconds)
    whisper_window: float = 3.0    # seconds of trailing audio the Whisper encoder sees (see benchmark)
    whisper_pad: bool = False      # pad that window to 30 s like offline (slow, ~0.35 s per call)
    mouth_scale: float = 1.0
    motion_smooth: float = 1.0
    threads: int | None = None     # renderer onnxruntime threads (default 1)
    whisper_threads: int = 1
    use_network: bool = True
    flush: bool = True             # at the end of input, make the remaining frames

    def __post_init__(self):
        if not 0.0 <= self.lookahead <= 2.0:
            raise ValueError(f"lookahead must be in [0, 2] s, got {self.lookahead}")
        if not 0.0 <= self.step <= 2.0:
            raise ValueError(f"step must be in [0, 2] s, got {self.step}")
        if not 1.0 <= self.whisper_window <= 30.0:
            raise ValueError(f"whisper_window must be in [1, 30] s, got {self.whisper_window}")


@dataclass
class StreamFrame:
    index: int              # output frame number
    time: float             # t_i = index / fps (seconds of the input audio it shows)
    image: np.ndarray       # (H, W, 3) RGB uint8
    audio: np.ndarray       # float32 samples [t_i, t_i + 1/fps) (what plays while it shows)
    speaking: float         # silence gate 0 (idle, neutral mouth) .. 1 (speech)
    template_index: int     # template frame drawn over
    landmarks: np.ndarray   # (478, 3) target landmarks (pixels) the mouth was rendered to
    received: float         # time.monotonic() when the chunk holding t_i arrived
    produced: float         # time.monotonic() when this frame was ready

    @property
    def latency(self) -> float:
        """Seconds from the arrival of the audio at t_i to this frame."""
        return self.produced - self.received


def as_float_chunk(chunk) -> np.ndarray:
    """A PCM chunk (float32/float64 in [-1, 1], int16, or int16 little-endian bytes) as float32."""
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        chunk = np.frombuffer(chunk, dtype="<i2")
    arr = np.asarray(chunk)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    return arr.astype(np.float32, copy=False)


def paced_chunks(audio: np.ndarray, chunk_seconds: float = 0.02, realtime: bool = False,
                 start: float | None = None) -> Iterator[np.ndarray]:
    """Cut ``audio`` into chunks; with ``realtime`` each is released when it would have been
    captured (``start + end of chunk``), as a microphone would."""
    n = max(1, int(round(chunk_seconds * SAMPLE_RATE)))
    t0 = time.monotonic() if start is None else start
    for s in range(0, len(audio), n):
        if realtime:
            due = t0 + min(len(audio), s + n) / SAMPLE_RATE
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield audio[s:s + n]


class _VadStream:
    """Silero VAD probabilities, one per 512-sample chunk, with the LSTM state carried."""

    def __init__(self):
        from lipdub.audio.vad import CHUNK, CONTEXT, STATE_SHAPE, _session

        self.session = _session()
        self.chunk, self.context = CHUNK, CONTEXT
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.probs: list[float] = []

    def update(self, audio: "_Audio", final: bool = False) -> None:
        while True:
            c = len(self.probs)
            start, stop = c * self.chunk, (c + 1) * self.chunk
            if stop > audio.total and not (final and start < audio.total):
                return
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


class _Audio:
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

    def get(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) in global indices; before 0 reads as silence (zeros)."""
        pre = max(0, -start)
        start = max(start, 0)
        if start < self.offset:
            raise RuntimeError("streaming audio window fell out of the kept buffer")
        seg = self.buf[start - self.offset:stop - self.offset]
        return np.concatenate([np.zeros(pre, np.float32), seg]) if pre else seg


class _Features:
    """Per-frame mel / whisper / vad for frames [a, b) from the audio received so far."""

    def __init__(self, fps: float, options: StreamOptions):
        from lipdub.audio.whisper import WhisperEncoder

        self.fps = fps
        self.options = options
        self.encoder = WhisperEncoder(threads=options.whisper_threads)
        self.vad = _VadStream()

    def whisper(self, audio: _Audio, times: np.ndarray) -> np.ndarray:
        import ctranslate2

        from lipdub.audio.whisper import STATES_PER_WINDOW, WINDOW_SAMPLES, _silence_states, interpolate_states

        enc, opt = self.encoder, self.options
        total = audio.total
        if opt.whisper_pad or total <= WINDOW_SAMPLES and opt.whisper_window >= 30:
            start = max(0, total - WINDOW_SAMPLES)
        else:
            start = max(0, total - int(opt.whisper_window * SAMPLE_RATE))
        start -= start % 320  # whole encoder states (20 ms): positions stay on the 50 Hz grid
        wav = audio.get(start, total)
        if opt.whisper_pad:
            states = enc.window_states(wav)
        else:
            n = max(640, len(wav) + (-len(wav)) % 320)
            padded = np.zeros(n, np.float32)
            padded[:len(wav)] = wav
            mel = enc._extractor(padded, padding=0)
            mel = mel[:, :2 * (mel.shape[1] // 2)]
            batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
            states = np.array(enc._model.encode(batch, to_cpu=True), dtype=np.float32)[0]
            silence = _silence_states(str(enc.model_path), enc.compute_type, enc.threads)
            k = min(len(states), STATES_PER_WINDOW)
            states = states[:k] - silence[:k]
        return interpolate_states(states, times - start / SAMPLE_RATE)

    def compute(self, audio: _Audio, a: int, b: int, final: bool):
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


class Streamer:
    """The incremental engine behind :func:`stream`: models are loaded (and warmed up) when it is
    made, so the first chunk pays no start-up cost. ``feed(chunk)`` returns the frames that became
    ready, ``finish()`` the rest. ``timings`` accumulates seconds per stage."""

    def __init__(self, avatar, options: StreamOptions = StreamOptions()):
        from lipdub.motion import MotionModel, calibrate
        from lipdub.pipeline import GenerateOptions, _load_avatar, load_renderer

        self.options = options
        self.avatar = avatar = _load_avatar(avatar)
        self.fps = float(avatar.fps)
        # The same renderer generate uses: the avatar's U-Net, or the photo mesh warp.
        self.renderer = load_renderer(avatar, GenerateOptions(
            threads=options.threads, batch_size=8, use_network=options.use_network))
        self.model = MotionModel.load()
        self.cal = calibrate(np.asarray(avatar.landmarks), self.model)
        self.features = _Features(self.fps, options)
        self.ctx = self.model.receptive_field + 8     # left context frames (as pipeline.target_chunks)
        self.right_max = self.model.receptive_field + 8
        self.audio = _Audio(keep=max(options.whisper_window, MEL_SECONDS) + 2.0 + options.lookahead)
        self.arrivals: deque[tuple[int, float]] = deque()  # (global end sample, monotonic arrival)
        self.done = 0
        self.last_step_total = -10**9
        self.step_samples = int(options.step * SAMPLE_RATE)
        self.look = int(round(options.lookahead * SAMPLE_RATE))
        self.frame_samples = SAMPLE_RATE / self.fps
        self.timings = {"features": 0.0, "motion": 0.0, "render": 0.0, "steps": 0}
        self._warm_up()

    def _warm_up(self) -> None:
        """One throw-away step on silence: first-call costs of every session happen now."""
        saved = (self.audio, self.features.vad)
        self.audio = _Audio(keep=self.audio.keep / SAMPLE_RATE)
        self.features.vad = _VadStream()
        self.audio.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
        list(self._make(4, final=False))
        self.audio, self.features.vad = saved
        self.features.vad = _VadStream()
        self.done = 0
        self.renderer.reset()
        self.timings = {k: 0 * v for k, v in self.timings.items()}

    @property
    def frames_done(self) -> int:
        return self.done

    def _arrival_of(self, sample: int) -> float:
        arrivals = self.arrivals
        while len(arrivals) > 1 and arrivals[0][0] <= sample:
            arrivals.popleft()
        return arrivals[0][1] if arrivals else time.monotonic()

    def _make(self, stop: int, final: bool) -> Iterator[StreamFrame]:
        from lipdub.audio.timing import n_frames_for
        from lipdub.motion import audio_to_motion
        from lipdub.motion.calibrate import template_indices
        from lipdub.motion.model import silence_gate
        from lipdub.pipeline import draw_mouths, template_frames

        done, audio, avatar, fps = self.done, self.audio, self.avatar, self.fps
        if stop <= done:
            return
        t0 = time.perf_counter()
        a = max(0, done - self.ctx)
        avail = n_frames_for(audio.total / SAMPLE_RATE, fps) if audio.total else 1
        b = max(stop, min(avail, stop + self.right_max))
        f = self.features.compute(audio, a, b, final)
        t1 = time.perf_counter()
        order = template_indices(b, avatar.n_frames)[done:stop]
        lms = audio_to_motion(f, self.cal.landmarks, self.options.mouth_scale,
                              self.options.motion_smooth, frame_indices=order, left=done - a,
                              right=b - stop, model=self.model, calibration=self.cal)
        gate = silence_gate(f.vad)[done - a:stop - a]
        t2 = time.perf_counter()
        tmpl = list(template_frames(avatar, order))
        dubbed = draw_mouths(self.renderer, avatar, tmpl, order, lms)
        self.timings["features"] += t1 - t0
        self.timings["motion"] += t2 - t1
        self.timings["steps"] += 1
        for j, img in enumerate(dubbed):
            i = done + j
            s0 = int(round(i * self.frame_samples))
            s1 = int(round((i + 1) * self.frame_samples))
            snd = np.zeros(s1 - s0, np.float32)
            if s0 < audio.total:
                got = audio.get(s0, min(s1, audio.total))
                snd[:len(got)] = got
            self.done = i + 1
            yield StreamFrame(i, i / fps, img, snd, float(gate[j]), int(order[j]), lms[j],
                              self._arrival_of(s0), time.monotonic())
        self.timings["render"] += time.perf_counter() - t2

    def feed(self, chunk) -> list[StreamFrame]:
        """Add a PCM chunk; the frames that became ready (possibly none)."""
        x = as_float_chunk(chunk)
        if not len(x):
            return []
        audio = self.audio
        audio.append(x)
        self.arrivals.append((audio.total, time.monotonic()))
        ready = int(np.floor((audio.total - self.look) / self.frame_samples)) + 1 \
            if audio.total >= self.look else 0
        ready = min(ready, int(np.floor(audio.total * self.fps / SAMPLE_RATE + 0.5)))
        if ready > self.done and audio.total - self.last_step_total >= self.step_samples:
            self.last_step_total = audio.total
            return list(self._make(ready, final=False))
        return []

    def finish(self) -> list[StreamFrame]:
        """End of input: the remaining frames up to ``round(duration * fps)``."""
        from lipdub.audio.timing import n_frames_for

        if not self.audio.total:
            return []
        return list(self._make(n_frames_for(self.audio.total / SAMPLE_RATE, self.fps), final=True))


def stream(avatar, chunks: Iterable, options: StreamOptions = StreamOptions()) -> Iterator[StreamFrame]:
    """Frames of ``avatar`` (folder or ``Avatar`` with a trained renderer) saying the audio in
    ``chunks`` (16 kHz mono PCM: float arrays, int16 arrays or int16 LE bytes), yielded as soon as
    each can be made. Frame ``i`` needs audio up to ``i / fps + options.lookahead``; at the end of
    the input the remaining frames up to ``round(duration * fps)`` are made (``flush``).
    ``avatar`` may also be a ready :class:`Streamer` (models already loaded)."""
    engine = avatar if isinstance(avatar, Streamer) else Streamer(avatar, options)
    for chunk in chunks:
        yield from engine.feed(chunk)
    if engine.options.flush:
        yield from engine.finish()
