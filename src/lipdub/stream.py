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

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE

MEL_SECONDS = 3.0          # trailing audio the log-mel is recomputed on per step
MEL_HOP = 200              # log-mel hop (samples)
DRAW_BATCH = 4             # frames per batch handed from stage one to stage two
RENDER_QUEUE = 3           # batches waiting for stage two (bounded: no growing backlog)
MAX_STEP_FRAMES = 25       # live: a step never covers more frames; older ones are given up
BACKLOG_SECONDS = 1.0      # input faster than real time: feed waits while stage one is this far behind
RECORD_QUEUE = 25          # frames waiting for the recording's encoder (1 s)
RECORD_NICE = 5            # the recording's encoder runs this much nicer than the stream
IDLE_EXIT = 10.0           # worker threads end after this long without audio (restarted on demand)


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
    # Live input: a frame that could not be drawn within this many seconds of its audio's arrival
    # repeats the last image instead (counted in Streamer.stats["repeated"]). None: every frame
    # is drawn, however late (input that is not real time, e.g. a file fed at once).
    max_latency: float | None = None
    pipelined: bool = True         # features+motion and drawing on two threads (both cores)

    def __post_init__(self):
        if not 0.0 <= self.lookahead <= 2.0:
            raise ValueError(f"lookahead must be in [0, 2] s, got {self.lookahead}")
        if not 0.0 <= self.step <= 2.0:
            raise ValueError(f"step must be in [0, 2] s, got {self.step}")
        if not 1.0 <= self.whisper_window <= 30.0:
            raise ValueError(f"whisper_window must be in [1, 30] s, got {self.whisper_window}")
        if self.max_latency is not None and not self.max_latency > 0:
            raise ValueError(f"max_latency must be positive (or None), got {self.max_latency}")


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
    repeated: bool = False  # too late to draw (max_latency): the previous image shown again

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

    def snapshot(self) -> "_Audio":
        """The audio received so far, unaffected by later appends (they make new arrays)."""
        copy = _Audio.__new__(_Audio)
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


@dataclass
class _Targets:
    """Stage one's output for consecutive frames ``start...``: what stage two draws."""

    start: int
    order: np.ndarray        # template frame per output frame
    landmarks: np.ndarray    # (n, 478, 3) target landmarks
    gate: np.ndarray         # (n,) silence gate
    sounds: list             # per frame, its samples
    received: list           # per frame, arrival time of its audio
    skip: bool = False       # too late to draw: stage two repeats the last image


class Streamer:
    """The incremental engine behind :func:`stream`: models are loaded (and warmed up) when it is
    made, so the first chunk pays no start-up cost. ``feed(chunk)`` returns the frames that became
    ready, ``finish()`` the rest, ``poll(timeout)`` waits for more. ``timings`` accumulates seconds
    per stage; ``stats`` counts frames and frames repeated because they were late.

    With ``options.pipelined`` (default) two threads do the work, joined by bounded queues, so a
    live stream uses both cores: one computes features and motion, the other draws and pastes
    mouths (OpenCV, JPEG decoding, ONNX Runtime and CTranslate2 all release the GIL). ``feed``
    only stores the audio and asks for frames. Input arriving faster than the engine runs (a
    file fed at once) is held back: ``feed`` blocks while stage one is ``BACKLOG_SECONDS`` behind.
    With ``options.max_latency`` (live use) a frame whose audio arrived longer ago than that by
    the time it could be drawn is not drawn: the last image is shown again and the frame is
    counted in ``stats["repeated"]``, so a machine that cannot keep up shows fewer fresh frames
    but never falls further and further behind."""

    def __init__(self, avatar, options: StreamOptions = StreamOptions()):
        from lipdub.motion import MotionModel, calibrate_avatar
        from lipdub.pipeline import GenerateOptions, _load_avatar, load_renderer

        self.options = options
        self.avatar = avatar = _load_avatar(avatar)
        self.fps = float(avatar.fps)
        # The same renderer generate uses: the avatar's bank (+ U-Net if trained), or the photo mesh warp.
        self.renderer = load_renderer(avatar, GenerateOptions(
            threads=options.threads, batch_size=8, use_network=options.use_network))
        self.model = MotionModel.load()
        self.cal = calibrate_avatar(avatar, self.model)   # the avatar's own amplitude map
        self.features = _Features(self.fps, options)
        self.ctx = self.model.receptive_field + 8     # left context frames (as pipeline.target_chunks)
        self.right_max = self.model.receptive_field + 8
        self.audio = _Audio(keep=max(options.whisper_window, MEL_SECONDS) + 2.0 + options.lookahead
                            + BACKLOG_SECONDS)
        self.arrivals: deque[tuple[int, float]] = deque()  # (global end sample, monotonic arrival)
        self.done = 0            # frames drawn (stage two)
        self.planned = 0         # frames whose targets are made (stage one)
        self.asked = 0           # frames asked for (feed)
        self.last_step_total = -10**9
        self.step_samples = int(options.step * SAMPLE_RATE)
        self.look = int(round(options.lookahead * SAMPLE_RATE))
        self.frame_samples = SAMPLE_RATE / self.fps
        self.timings = {"features": 0.0, "motion": 0.0, "render": 0.0, "steps": 0}
        self.stats = {"frames": 0, "repeated": 0}
        self._last_image: np.ndarray | None = None
        self._per_frame = 0.0    # running estimates (s): drawing one frame; one features+motion step
        self._step_cost = 0.0
        self._lock = threading.Lock()          # the audio buffer: feed appends, stage one reads
        self._ready = threading.Condition()    # frames out of stage two
        self._out: deque[StreamFrame] = deque()
        self._jobs: queue.Queue = queue.Queue()
        self._batches: queue.Queue = queue.Queue(maxsize=RENDER_QUEUE)
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._warm_up()

    def _warm_up(self) -> None:
        """One throw-away step on silence: first-call costs of every session happen now."""
        saved = (self.audio, self.features.vad)
        self.audio = _Audio(keep=self.audio.keep / SAMPLE_RATE)
        self.features.vad = _VadStream()
        self.audio.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
        targets = self._targets(4, final=False, audio=self.audio)
        self._draw(targets)
        self.audio, self.features.vad = saved
        self.features.vad = _VadStream()
        self.done = self.planned = self.asked = 0
        self._out.clear()
        self._last_image = None
        self.renderer.reset()
        self.timings = {k: 0 * v for k, v in self.timings.items()}
        self.stats = {"frames": 0, "repeated": 0}

    @property
    def frames_done(self) -> int:
        return self.done

    def _arrival_of(self, sample: int, forget: bool = True) -> float:
        """When the chunk holding ``sample`` arrived; with ``forget``, earlier chunks are dropped
        from the record (samples are asked for in order)."""
        arrivals = self.arrivals
        if not forget:
            with self._lock:  # feed appends meanwhile
                for end, when in arrivals:
                    if end > sample:
                        return when
                return arrivals[-1][1] if arrivals else time.monotonic()
        while len(arrivals) > 1 and arrivals[0][0] <= sample:
            arrivals.popleft()
        return arrivals[0][1] if arrivals else time.monotonic()

    def _hopeless(self, stop: int) -> int:
        """Live: the first frame in [planned, stop) that can still be shown within max_latency,
        given what a step and a frame have been costing; frames before it are given up."""
        budget = self.options.max_latency - self._step_cost - DRAW_BATCH * self._per_frame
        now = time.monotonic()
        k = max(self.planned, stop - MAX_STEP_FRAMES)
        while k < stop and now - self._arrival_of(int(round(k * self.frame_samples)), forget=False) > budget:
            k += 1
        return k

    # ----------------------------------------------------------------------------- the stages

    def _targets(self, stop: int, final: bool, audio: _Audio) -> _Targets | None:
        """Stage one: features and motion for frames [planned, stop)."""
        from lipdub.audio.timing import n_frames_for
        from lipdub.motion import audio_to_motion
        from lipdub.motion.calibrate import template_indices
        from lipdub.motion.model import silence_gate

        done, avatar, fps = self.planned, self.avatar, self.fps
        if stop <= done:
            return None
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
        self.timings["features"] += t1 - t0
        self.timings["motion"] += time.perf_counter() - t1
        self.timings["steps"] += 1
        self.planned = stop
        return _Targets(done, order, lms, gate, *self._sounds(done, stop, audio))

    def _sounds(self, start: int, stop: int, audio: _Audio) -> tuple[list, list]:
        sounds, received = [], []
        for i in range(start, stop):
            s0 = int(round(i * self.frame_samples))
            s1 = int(round((i + 1) * self.frame_samples))
            snd = np.zeros(s1 - s0, np.float32)
            if audio.offset <= s0 < audio.total:
                got = audio.get(s0, min(s1, audio.total))
                snd[:len(got)] = got
            sounds.append(snd)
            received.append(self._arrival_of(s0))
        return sounds, received

    def _skipped(self, stop: int, audio: _Audio) -> _Targets:
        """Frames [planned, stop) given up before stage one (live, hopelessly late): they repeat
        the last image. The VAD still hears their audio, so its state stays continuous."""
        from lipdub.motion.calibrate import template_indices

        start = self.planned
        self.features.vad.update(audio)
        order = template_indices(stop, self.avatar.n_frames)[start:stop]
        self.planned = stop
        return _Targets(start, order, np.asarray(self.avatar.landmarks)[order],
                        np.zeros(stop - start, np.float32), *self._sounds(start, stop, audio), skip=True)

    def _draw(self, targets: _Targets | None) -> list[StreamFrame]:
        """Stage two: draw (or, when too late, repeat) the mouths of ``targets``' frames."""
        from lipdub.pipeline import draw_mouths

        if targets is None:
            return []
        t0 = time.perf_counter()
        n = len(targets.order)
        late = np.full(n, targets.skip)
        limit = self.options.max_latency
        if limit is not None and not targets.skip:
            now = time.monotonic()
            finish = now + self._per_frame * np.arange(1, n + 1)
            late = finish - np.asarray(targets.received) > limit
        images: list = [None] * n
        drawn = np.flatnonzero(~late)
        if drawn.size:
            order = targets.order[drawn]
            # decoded here, not by template_frames: its read-ahead threads cost more to start
            # than a few frames take to decode
            tmpl = [np.array(self.avatar.frame(int(t))) for t in order]
            for j, img in zip(drawn, draw_mouths(self.renderer, self.avatar, tmpl, order,
                                                 targets.landmarks[drawn])):
                images[j] = img
            spent = (time.perf_counter() - t0) / drawn.size
            self._per_frame = spent if not self._per_frame else 0.8 * self._per_frame + 0.2 * spent
        out = []
        for j in range(n):
            if images[j] is None:  # late: the viewer sees the last image a little longer
                images[j] = self._last_image if self._last_image is not None else \
                    np.array(self.avatar.frame(int(targets.order[j])))
            self._last_image = images[j]
            i = targets.start + j
            out.append(StreamFrame(i, i / self.fps, images[j], targets.sounds[j], float(targets.gate[j]),
                                   int(targets.order[j]), targets.landmarks[j], targets.received[j],
                                   time.monotonic(), repeated=bool(late[j])))
        self.done = targets.start + n
        self.stats["frames"] += n
        self.stats["repeated"] += int(late.sum())
        self.timings["render"] += time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------------- the two threads

    def _plan_loop(self) -> None:
        """Stage one's thread: takes the newest request (requests pile up while it works: the
        next step covers them all), makes targets, hands them on in small batches."""
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=IDLE_EXIT)
                except queue.Empty:
                    job = None
                final = False
                while job is not None:
                    stop, fin = job
                    final = final or fin
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)  # handle what we have, then stop
                        break
                    job = (max(stop, more[0]), more[1])
                if job is None:
                    break
                stop = max(job[0], self.planned)
                with self._lock:
                    audio = self.audio.snapshot()
                if self.options.max_latency is not None and not final:
                    first = self._hopeless(stop)
                    if first > self.planned:
                        self._batches.put(self._skipped(first, audio))
                t0 = time.perf_counter()
                targets = self._targets(stop, final, audio)
                spent = time.perf_counter() - t0
                self._step_cost = spent if not self._step_cost else 0.8 * self._step_cost + 0.2 * spent
                with self._ready:
                    self._ready.notify_all()  # feed may be waiting for stage one to catch up
                if targets is not None:
                    for s in range(0, len(targets.order), DRAW_BATCH):
                        self._batches.put(_Targets(
                            targets.start + s, targets.order[s:s + DRAW_BATCH],
                            targets.landmarks[s:s + DRAW_BATCH], targets.gate[s:s + DRAW_BATCH],
                            targets.sounds[s:s + DRAW_BATCH], targets.received[s:s + DRAW_BATCH]))
        except BaseException as error:
            self._fail(error)
        finally:
            self._batches.put(None)

    def _draw_loop(self) -> None:
        try:
            while True:
                targets = self._batches.get()
                if targets is None:
                    break
                frames = self._draw(targets)
                with self._ready:
                    self._out.extend(frames)
                    self._ready.notify_all()
        except BaseException as error:
            self._fail(error)
            while self._batches.get() is not None:  # let stage one finish putting
                pass

    def _fail(self, error: BaseException) -> None:
        with self._ready:
            if self._error is None:
                self._error = error
            self._ready.notify_all()

    def _start(self) -> None:
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        self._join()
        self._threads = [threading.Thread(target=self._plan_loop, name="lipdub-stream-plan", daemon=True),
                         threading.Thread(target=self._draw_loop, name="lipdub-stream-draw", daemon=True)]
        for t in self._threads:
            t.start()

    def _join(self) -> None:
        if any(t.is_alive() for t in self._threads):
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def _take(self) -> list[StreamFrame]:
        with self._ready:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            out = list(self._out)
            self._out.clear()
        return out

    # ------------------------------------------------------------------------------ the API

    def _ask(self, stop: int, final: bool) -> list[StreamFrame]:
        self.asked = max(self.asked, stop)
        if not self.options.pipelined:
            with self._lock:
                audio = self.audio.snapshot()
            return self._draw(self._targets(stop, final, audio))
        self._start()
        self._jobs.put((stop, final))
        return self._take()

    def feed(self, chunk) -> list[StreamFrame]:
        """Add a PCM chunk; the frames that became ready (possibly none)."""
        x = as_float_chunk(chunk)
        if not len(x):
            return self._take() if self.options.pipelined else []
        if self.options.pipelined and self.options.max_latency is None:
            self._hold_back()
        with self._lock:
            audio = self.audio
            audio.append(x)
            self.arrivals.append((audio.total, time.monotonic()))
        ready = int(np.floor((audio.total - self.look) / self.frame_samples)) + 1 \
            if audio.total >= self.look else 0
        ready = min(ready, int(np.floor(audio.total * self.fps / SAMPLE_RATE + 0.5)))
        if ready > self.asked and audio.total - self.last_step_total >= self.step_samples:
            self.last_step_total = audio.total
            return self._ask(ready, final=False)
        return self._take() if self.options.pipelined else []

    def _hold_back(self) -> None:
        """Input faster than real time: wait while stage one is BACKLOG_SECONDS behind."""
        behind = int(BACKLOG_SECONDS * self.fps)
        with self._ready:
            while self.asked - self.planned > behind and self._error is None and \
                    any(t.is_alive() for t in self._threads):
                self._ready.wait(0.1)

    def poll(self, timeout: float = 0.0) -> list[StreamFrame]:
        """Frames that are ready, waiting up to ``timeout`` s for at least one."""
        if self.options.pipelined and timeout > 0:
            with self._ready:
                if not self._out and self._error is None:
                    self._ready.wait(timeout)
        return self._take() if self.options.pipelined else []

    def finish(self) -> list[StreamFrame]:
        """End of input: the remaining frames up to ``round(duration * fps)``."""
        from lipdub.audio.timing import n_frames_for

        if not self.audio.total:
            return self._take() if self.options.pipelined else []
        stop = n_frames_for(self.audio.total / SAMPLE_RATE, self.fps)
        if not self.options.pipelined:
            return self._ask(stop, final=True)
        self._start()
        self._jobs.put((stop, True))
        self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []
        return self._take()

    def close(self) -> None:
        """Stop the worker threads without making the remaining frames."""
        self._join()


class Recorder:
    """A ``VideoWriter`` fed from its own thread: recording a stream never holds up the stream.

    ``write(image)`` queues a frame (blocking only while the encoder is ``depth`` frames
    behind, which a real-time-capable encoder preset never is); ``close()`` writes the rest and
    finishes the file, ``abort()`` drops it. ``blocked`` is the time ``write`` spent waiting."""

    def __init__(self, writer, depth: int = RECORD_QUEUE, nice: int = RECORD_NICE):
        self.writer = writer
        self.blocked = 0.0
        self.nice = nice
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lipdub-record", daemon=True)
        self._thread.start()

    @property
    def path(self):
        return self.writer.path

    def _run(self) -> None:
        written = 0
        while True:
            image = self._queue.get()
            if image is None:
                return
            if self._error is None:
                try:
                    self.writer.write(image)
                except BaseException as error:  # raised to the caller on its next call
                    self._error = error
                written += 1
                if written == 2:  # the encoder's threads exist by now
                    _lower_priority(getattr(getattr(self.writer, "_proc", None), "pid", None), self.nice)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, image: np.ndarray) -> None:
        self._check()
        t0 = time.perf_counter()
        self._queue.put(image)
        self.blocked += time.perf_counter() - t0

    def close(self):
        self._queue.put(None)
        self._thread.join()
        try:
            self._check()
        except BaseException:
            self.writer.abort()
            raise
        return self.writer.close()

    def abort(self) -> None:
        self._error = self._error or RuntimeError("recording aborted")
        self._queue.put(None)
        self._thread.join()
        self.writer.abort()


def _lower_priority(pid: int | None, nice: int) -> None:
    """Renice every thread of process ``pid`` (Linux: nice is per thread) by ``nice``, so a
    recording's encoder yields the CPU to the live stream; its queue absorbs the delay."""
    import os

    if not pid or nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        except OSError:
            pass


def stream(avatar, chunks: Iterable, options: StreamOptions = StreamOptions()) -> Iterator[StreamFrame]:
    """Frames of ``avatar`` (folder or ``Avatar``) saying the audio in ``chunks`` (16 kHz mono
    PCM: float arrays, int16 arrays or int16 LE bytes), yielded as soon as each can be made.
    Frame ``i`` needs audio up to ``i / fps + options.lookahead``; at the end of the input the
    remaining frames up to ``round(duration * fps)`` are made (``flush``). ``avatar`` may also be
    a ready :class:`Streamer` (models already loaded)."""
    engine = avatar if isinstance(avatar, Streamer) else Streamer(avatar, options)
    try:
        for chunk in chunks:
            yield from engine.feed(chunk)
        if engine.options.flush:
            yield from engine.finish()
    finally:
        engine.close()
