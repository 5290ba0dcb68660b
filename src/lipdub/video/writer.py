"""Encoding frames (plus an audio track) to H.264 MP4 through ffmpeg, atomically, and checking the result."""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from lipdub.errors import InputError, OutputError
from lipdub.video.ffmpeg import ffmpeg_exe, ffmpeg_says, rate_fraction
from lipdub.video.reader import MediaInfo, probe

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")


@dataclass(frozen=True)
class EncodeOptions:
    """H.264 + AAC encoding settings."""

    fps: float = 25.0
    crf: int = 18  # x264 quality: 0 lossless, 18 visually transparent, 51 worst
    preset: str = "veryfast"  # x264 speed/size trade-off
    audio_bitrate: str = "192k"
    pix_fmt: str = "yuv420p"  # what every player decodes

    def __post_init__(self):
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {self.preset!r}")


class VideoWriter:
    """Pipe RGB frames into an H.264 MP4 (whatever the suffix) with an optional AAC track, atomically.

    Output goes to ``<path>.partial<suffix>`` and is renamed to `path` only after ffmpeg succeeds;
    any failure deletes the partial file and leaves whatever was at `path` untouched. With `audio`
    (an audio file, or a video whose audio track is taken) the result stops at the shorter of the
    frames and the audio, so callers give ``round(audio_duration * fps)`` frames. Odd sizes get
    their last row/column repeated, since yuv420p needs even ones.

    Before the rename, ``verify_output`` checks the file: a video stream with >= 1 frame, the
    audio track when one was given, and a length within one frame of ``expected_seconds`` (or
    of the shorter of frames and audio). A file that fails is deleted: OutputError.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int,
                 options: EncodeOptions = EncodeOptions(), audio: str | os.PathLike | None = None,
                 expected_seconds: float | None = None):
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.options = options
        self.frames_written = 0
        self.has_audio = audio is not None
        #: What close() checks the file lasts (within a frame): this, when the caller knows it
        #: (generate: the decoded audio's length); else the shorter of the frames and the audio.
        self.expected_seconds = expected_seconds
        self._audio_seconds = 0.0
        self.partial_path = self.path.with_name(f"{self.path.name}.partial{self.path.suffix or '.mp4'}")
        self._closed = True  # until ffmpeg runs: abort() and __del__ have nothing to stop
        self._prepare_output()
        try:
            if audio is not None:
                audio_info = probe(audio)
                if not audio_info.has_audio:
                    raise InputError(f"no audio stream in {audio}")
                self._audio_seconds = audio_info.audio_duration
            self._stderr = tempfile.TemporaryFile()
            self._proc = subprocess.Popen(self._command(audio), stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr)
        except BaseException:
            self.partial_path.unlink(missing_ok=True)
            raise
        self._closed = False

    def _prepare_output(self) -> None:
        """Fail before any work if the output can't be written, by creating the partial file."""
        if self.path.is_dir():
            raise OutputError(f"output is a directory: {self.path}")
        blocker = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise OutputError(f"cannot write {self.path}: {blocker} is a file, not a folder")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.partial_path, "wb"):
                pass
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _command(self, audio) -> list[str]:
        opts = self.options
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{_even(self.width)}x{_even(self.height)}",
               "-framerate", rate_fraction(opts.fps), "-i", "pipe:0"]
        if audio is not None:
            # -shortest: fewer frames than audio must not leave a frozen picture under the rest of
            # the sound. 48 kHz is what players expect, and its 21 ms AAC frames cut the audio end
            # finer than 16 or 22.05 kHz ones would (46-64 ms, more than a video frame).
            cmd += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                    "-b:a", opts.audio_bitrate, "-ar", "48000", "-shortest"]
        # Convert with and tag BT.709, so players and our own reader agree on the colours. (Primaries
        # and transfer must be set on the frames: ffmpeg 9 lets the frames override the options.)
        cmd += ["-vf", "setparams=color_primaries=bt709:color_trc=bt709", "-colorspace", "bt709",
                "-color_range", "tv", "-c:v", "libx264", "-preset", opts.preset, "-crf", str(opts.crf),
                "-pix_fmt", opts.pix_fmt, "-fps_mode", "cfr"]
        # The index goes first (faststart), so the file plays while it is still downloading. The
        # container is named: the partial file's name must not decide it.
        return cmd + ["-movflags", "+faststart", "-f", "mp4", str(self.partial_path)]

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame of the size given at construction."""
        if self._closed:
            raise ValueError(f"write to a closed VideoWriter ({self.path})")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a ({self.height}, {self.width}, 3) uint8 frame, "
                             f"got {frame.shape} {frame.dtype}")
        if self.width % 2 or self.height % 2:
            frame = np.pad(frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        try:  # a buffered pipe passes a frame-sized write straight through, whole
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except OSError:  # BrokenPipeError: ffmpeg has died, its stderr says why
            self._fail(f"ffmpeg stopped while writing {self.path}")
        self.frames_written += 1

    def write_many(self, frames: Iterable[np.ndarray]) -> int:
        """Append every frame; returns how many were written."""
        n = 0
        for frame in frames:
            self.write(frame)
            n += 1
        return n

    def close(self) -> Path:
        """Finish encoding and move the file into place; returns the final path."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"no frames were given for {self.path}")
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if self._proc.wait() != 0:
            self._fail(f"ffmpeg failed to write {self.path}")
        expected = self.expected_seconds
        if expected is None:
            expected = self.frames_written / self.options.fps
            if self.has_audio and self._audio_seconds > 0:
                expected = min(expected, self._audio_seconds)
        try:
            verify_output(self.partial_path, expected, self.options.fps, audio=self.has_audio,
                          name=self.path)
        except OutputError:
            self.abort()
            raise
        try:
            os.replace(self.partial_path, self.path)
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot move the finished video to {self.path}: {e.strerror or e}") from None
        self._closed = True
        self._stderr.close()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file; `path` is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.partial_path.unlink(missing_ok=True)

    def _fail(self, what: str) -> None:
        message = ffmpeg_says(self._stderr)
        self.abort()
        raise OutputError(f"{what}: {message}" if message else what)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        # Dropped without close(): never leave an ffmpeg process or a partial file behind.
        if getattr(self, "_closed", True) is False:
            self.abort()


def verify_output(path: str | os.PathLike, expected_seconds: float | None, fps: float,
                  audio: bool = True, name: str | os.PathLike | None = None) -> MediaInfo:
    """Check a written video before anyone trusts it; raise OutputError saying what is wrong.

    It must probe, hold a video stream with at least one frame, an audio stream when `audio`,
    and last `expected_seconds` within one frame (1 / fps), video and audio track alike. ffmpeg
    exits 0 on outputs that fail this: with -shortest and audio shorter than one frame it drops
    the video stream altogether. `name` is the path to name in messages (the final one).
    """
    name = name or path
    try:
        info = probe(path, size_limit=False)  # an output may well be larger than inputs may be
    except InputError as e:
        raise OutputError(f"the video written to {name} is unreadable ({e})") from None
    if not info.has_video or info.n_frames < 1:
        raise OutputError(f"the video written to {name} has no video frames")
    if audio and not info.has_audio:
        raise OutputError(f"the video written to {name} has no audio track")
    if expected_seconds is not None and expected_seconds > 0:
        # One frame, and a hair for timestamp rounding (ms timescales, AAC frame edges).
        tolerance = 1.0 / fps + 2e-3
        tracks = [("video", info.duration)] + ([("audio", info.audio_duration)] if audio else [])
        for what, seconds in tracks:
            if abs(seconds - expected_seconds) > tolerance:
                raise OutputError(f"the video written to {name} has {seconds:.3f} s of {what}, "
                                  f"not the expected {expected_seconds:.3f} s")
    return info


def _even(n: int) -> int:
    return n + n % 2


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, audio: str | os.PathLike | None = None,
                options: EncodeOptions = EncodeOptions(), size: tuple[int, int] | None = None,
                expected_seconds: float | None = None) -> Path:
    """Encode `frames` to `path` with VideoWriter. `size` = (width, height) of the output: frames of
    another size are resized to it; without it, the first frame's size is used."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise OutputError(f"no frames were given for {path}")
    width, height = size if size is not None else (first.shape[1], first.shape[0])
    with VideoWriter(path, width, height, options, audio, expected_seconds) as writer:
        for frame in itertools.chain([first], frames):
            if frame.shape[:2] != (height, width):
                import cv2

                shrink = width * height < frame.shape[0] * frame.shape[1]
                frame = cv2.resize(frame, (width, height),
                                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            writer.write(frame)
    return writer.path
