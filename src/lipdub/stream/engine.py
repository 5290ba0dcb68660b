"""The streaming engine: two threads (features + motion, drawing) joined by bounded queues."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from lipdub.audio.timing import SAMPLE_RATE
from lipdub.stream.chunks import as_float_chunk
from lipdub.stream.features import MEL_SECONDS, AudioWindow, StreamFeatures, VadStream
from lipdub.stream.options import StreamFrame, StreamOptions

DRAW_BATCH = 4             # frames per batch handed from stage one to stage two
RENDER_QUEUE = 3           # batches waiting for stage two (bounded: no growing backlog)
MAX_STEP_FRAMES = 25       # live: a step never covers more frames; older ones are given up
BACKLOG_SECONDS = 1.0      # input faster than real time: feed waits while stage one is this far behind
IDLE_EXIT = 10.0           # worker threads end after this long without audio (restarted on demand)


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
    mouths (OpenCV, JPEG decoding, ONNX Runtime and NumPy's BLAS all release the GIL). ``feed``
    only stores the audio and asks for frames. Input arriving faster than the engine runs (a
    file fed at once) is held back: ``feed`` blocks while stage one is ``BACKLOG_SECONDS`` behind.
    With ``options.max_latency`` (live use) a frame whose audio arrived longer ago than that by
    the time it could be drawn is not drawn: the last image is shown again and the frame is
    counted in ``stats["repeated"]``, so a machine that cannot keep up shows fewer fresh frames
    but never falls further and further behind."""

    def __init__(self, avatar, options: StreamOptions = StreamOptions()):
        from lipdub.motion import MotionModel, calibrate_avatar
        from lipdub.mouth_drawing import load_renderer
        from lipdub.pipeline import GenerateOptions, _load_avatar

        self.options = options
        self.avatar = avatar = _load_avatar(avatar)
        self.fps = float(avatar.fps)
        # The same renderer generate uses: the avatar's bank (+ U-Net if trained), or the photo mesh warp.
        self.renderer = load_renderer(avatar, GenerateOptions(
            threads=options.threads, batch_size=8, use_network=options.use_network))
        self.model = MotionModel.load()
        self.cal = calibrate_avatar(avatar, self.model)   # the avatar's own amplitude map
        self.features = StreamFeatures(self.fps, options)
        self.ctx = self.model.receptive_field + 8     # left context frames (as pipeline.target_chunks)
        self.right_max = self.model.receptive_field + 8
        self.audio = AudioWindow(keep=max(options.whisper_window, MEL_SECONDS) + 2.0 + options.lookahead
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
        self.audio = AudioWindow(keep=self.audio.keep / SAMPLE_RATE)
        self.features.vad = VadStream()
        self.audio.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
        targets = self._targets(4, final=False, audio=self.audio)
        self._draw(targets)
        self.audio, self.features.vad = saved
        # the warm-up's first-call costs must not seed the live cost estimates
        self._per_frame = self._step_cost = 0.0
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

    def _targets(self, stop: int, final: bool, audio: AudioWindow) -> _Targets | None:
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

    def _sounds(self, start: int, stop: int, audio: AudioWindow) -> tuple[list, list]:
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

    def _skipped(self, stop: int, audio: AudioWindow) -> _Targets:
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
        from lipdub.mouth_drawing import draw_mouths

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
                if job is None or self._error is not None:
                    break  # stopped, or stage two failed: nothing more would be drawn
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
        # Both loops run inside the shared one-thread BLAS/OpenCV limit (lipdub.compute_threads),
        # held while either runs: spinning library workers would take the other loop's core,
        # and the Whisper pass then nests in it instead of switching the limit on every step
        # while the draw loop is inside OpenCV or BLAS.
        self._threads = [threading.Thread(target=_with_one_compute_thread(self._plan_loop),
                                          name="lipdub-stream-plan", daemon=True),
                         threading.Thread(target=_with_one_compute_thread(self._draw_loop),
                                          name="lipdub-stream-draw", daemon=True)]
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


def _with_one_compute_thread(loop):
    def run():
        from lipdub.compute_threads import single_compute_threads

        with single_compute_threads():
            loop()
    return run


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
