"""What a stream is given and gives: its options and its timestamped output frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StreamOptions:
    lookahead: float = 0.2         # seconds of audio past a frame's instant before it is made
    step: float = 0.08             # process at most every this much new audio (seconds)
    whisper_window: float = 3.0    # seconds of trailing audio the Whisper encoder sees (see benchmark)
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
