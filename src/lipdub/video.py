"""Media I/O: probe files, stream frames out of any video, encode frames (plus an audio track) to MP4.

PyAV answers questions about a file (streams, size, rotation, whether it decodes at all); the bundled
ffmpeg binary does the bulk work through pipes, so a long video is never held in memory and the
decoder/encoder run in their own process, in parallel with the Python stage feeding or reading them.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

from lipdub.errors import InputError, MissingDependencyError, OutputError

DEFAULT_MAX_INPUT_BYTES = 4 * 1024 ** 3
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
# Containers whose header states the duration. Elsewhere (MPEG-PS/TS, raw H.264, WebM recorded by a
# browser) ffmpeg guesses it, from the last timestamp minus a frame or from the bitrate.
_INDEXED_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"}
# Demuxers that draw text files (ANSI art, .txt) as video: never a face video.
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: imageio-ffmpeg's bundled one, else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MissingDependencyError("ffmpeg not found: pip install imageio-ffmpeg, or install ffmpeg")
    return exe


# --------------------------------------------------------------------------------------- probing

@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds. Sizes are as displayed, i.e. after the rotation metadata."""

    path: Path
    is_image: bool
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float  # average rate; 0.0 for images and audio-only files
    duration: float  # seconds of video (of audio for audio-only files); 0.0 for images
    n_frames: int  # at the native rate; 1 for images
    video_codec: str  # ffmpeg decoder name ("h264", "hevc", "png", ...); "" without video
    rotation: int  # clockwise degrees the stored picture is turned for display: 0, 90, 180, 270
    audio_sample_rate: int  # 0 without audio
    audio_duration: float = 0.0  # seconds; 0.0 without audio


def probe(path: str | os.PathLike, *, size_limit: bool = True) -> MediaInfo:
    """Describe a media file, or raise InputError saying in one line why it is not usable.

    ``size_limit=False`` skips the input size limit (for checking our own outputs)."""
    import av

    path = Path(path)
    _check_file(path, size_limit)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"cannot read {path}: not a media file, or corrupt ({_reason(e)})") from None
    with container:
        if container.format.name in _TEXT_FORMATS:
            raise InputError(f"not a media file: {path} is text that ffmpeg would render as a picture")
        # Cover art in an MP3/M4A shows up as a one-picture video stream: it is not video.
        videos = [s for s in container.streams.video
                  if not s.disposition & av.stream.Disposition.attached_pic]
        audios = list(container.streams.audio)
        if not videos and not audios:
            raise InputError(f"no video or audio stream in {path}")
        audio_rate = (audios[0].rate or 0) if audios else 0
        audio_seconds = _header_seconds(audios[0], container) if audios else 0.0
        if not videos:
            _decode_first(container, audios[0], path)
            return MediaInfo(path, False, False, True, 0, 0, 0.0, audio_seconds, 0, "", 0,
                             audio_rate, audio_seconds)
        stream = videos[0]
        codec = stream.codec_context.name
        first = _decode_first(container, stream, path)
        width, height = first.width, first.height
        fmt = container.format.name
        if (fmt == "image2" or fmt.endswith("_pipe")) and (stream.frames or 1) <= 1:
            rotation, swap = _exif_rotation(path)
            width, height = (height, width) if swap else (width, height)
            return MediaInfo(path, True, True, bool(audios), width, height, 0.0, 0.0, 1, codec,
                             rotation, audio_rate, audio_seconds)
        rotation = (-round(first.rotation or 0)) % 360  # PyAV counts counter-clockwise
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        seconds = _header_seconds(stream, container) if fmt in _INDEXED_FORMATS else 0.0
        if seconds <= 0:
            seconds = _scan_seconds(path, stream.index, fps)
        n_frames = stream.frames or round(seconds * fps)
        return MediaInfo(path, False, True, bool(audios), width, height, fps, seconds, max(1, n_frames),
                         codec, rotation, audio_rate, audio_seconds)


def _check_file(path: Path, size_limit: bool = True) -> None:
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"is a directory, not a media file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"empty file: {path}")
    if size_limit:
        raw_limit = os.environ.get("LIPDUB_MAX_INPUT_BYTES", "").strip()
        try:
            limit = int(raw_limit) if raw_limit else DEFAULT_MAX_INPUT_BYTES
        except ValueError:
            raise InputError(f"LIPDUB_MAX_INPUT_BYTES must be a number of bytes, not {raw_limit!r}") from None
        if size > limit:
            raise InputError(f"{path} is {size / 2 ** 30:.2f} GiB, over the {limit / 2 ** 30:.2f} GiB input "
                             "limit (set LIPDUB_MAX_INPUT_BYTES to allow bigger files)")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")


def _decode_first(container, stream, path: Path):
    """The first decoded frame of `stream`: proves the file is not corrupt, and carries the rotation."""
    import av

    try:
        for frame in container.decode(stream):
            return frame
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"corrupt or truncated media file: {path} ({_reason(e)})") from None
    raise InputError(f"no decodable {stream.type} frame in {path}")


def _header_seconds(stream, container) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def _scan_seconds(path: Path, index: int, fps: float) -> float:
    """A video stream's duration from its packets' timestamps: reads the file, but decodes nothing."""
    import av

    first = end = None
    n_packets = 0
    with av.open(str(path)) as container:
        stream = container.streams[index]
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            n_packets += 1
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        if first is None:  # raw elementary streams carry no timestamps
            return n_packets / fps if fps else 0.0
        return float((end - first) * stream.time_base)


def _exif_rotation(path: Path) -> tuple[int, bool]:
    """(clockwise degrees, whether width and height swap) from a photo's EXIF orientation tag."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a picture PIL can't open has no EXIF we could read either
        return 0, False
    return {3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}.get(orientation, 0), orientation in (5, 6, 7, 8)


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0]


# -------------------------------------------------------------------------------------- decoding

def frame_count(path: str | os.PathLike, fps: float = 25.0) -> int:
    """How many frames read_frames(path, fps) yields: round(duration * fps), 1 for an image.

    Taken from the probe; read_frames never yields more, and fewer only for a damaged file.
    """
    info = probe(path)
    if not info.has_video:
        raise InputError(f"no video stream in {info.path}")
    return 1 if info.is_image else max(1, round(info.duration * fps))


def output_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is <= max_size, both even; unchanged without max_size."""
    if max_size is None:
        return width, height
    scale = min(1.0, max_size / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def read_frames(path: str | os.PathLike, fps: float = 25.0, max_size: int | None = None) -> Iterator[np.ndarray]:
    """Stream RGB uint8 frames at a constant `fps`: frame i is the picture shown at time i / fps.

    Rotation metadata is applied; with `max_size` the longer side is shrunk to at most that (even
    sizes). An image yields itself once. The file is probed now, so a bad path raises here rather
    than at the first frame; decoding failures part way raise InputError from the iterator.
    """
    info = probe(path)
    if not info.has_video:
        raise InputError(f"no video stream in {info.path}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if info.is_image:
        return _read_image(info, max_size)
    return _read_video(info, fps, output_size(info.width, info.height, max_size))


def _read_image(info: MediaInfo, max_size: int | None) -> Iterator[np.ndarray]:
    from PIL import Image, ImageOps

    try:
        with Image.open(info.path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except Exception:  # a format only ffmpeg knows
        import av

        with av.open(str(info.path)) as container:
            img = next(container.decode(video=0)).to_image().convert("RGB")
    size = output_size(img.width, img.height, max_size)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS)
    yield np.array(img)


def _read_video(info: MediaInfo, fps: float, size: tuple[int, int]) -> Iterator[np.ndarray]:
    width, height = size
    expected = max(1, round(info.duration * fps)) if info.duration > 0 else None
    resize = "" if size == (info.width, info.height) else f",scale={width}:{height}:flags=area"
    # ffmpeg turns the picture by the rotation metadata itself (autorotate) before our filters. The
    # last frame's length is a guess in some streams (B-frames with VFR), which can run the fps
    # filter past the real end: the probed duration bounds the count.
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(info.path),
           "-map", "0:v:0", "-vf", f"fps={_fraction(fps)}{resize}", "-pix_fmt", "rgb24", "-f", "rawvideo"]
    cmd += ["-frames:v", str(expected), "pipe:1"] if expected else ["pipe:1"]
    stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it to avoid a deadlock
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    n_read = 0
    try:
        while True:
            # A fresh array per frame, filled in place: callers may keep frames, and one copy is enough.
            # A buffered pipe's readinto() waits for the whole frame (or the end).
            frame = np.empty((height, width, 3), np.uint8)
            got = proc.stdout.readinto(memoryview(frame).cast("B"))
            if got == 0:
                break
            if got < frame.nbytes:
                raise InputError(f"ffmpeg stopped mid-frame decoding {info.path}: {_ffmpeg_says(stderr)}")
            n_read += 1
            yield frame
        if proc.wait() != 0:
            raise InputError(f"decoding {info.path} failed after {n_read} frames: {_ffmpeg_says(stderr)}")
        message = _ffmpeg_says(stderr)
        # ffmpeg conceals damage and exits 0: a stream that ends well short of its duration *and*
        # logged errors is a truncated or broken file, not merely a short one.
        if message and expected and n_read < expected - max(2, 0.02 * expected):
            raise InputError(f"{info.path} is corrupt or truncated: decoding stopped at frame "
                             f"{n_read} of {expected} ({message})")
    finally:
        if proc.poll() is None:  # the consumer stopped early, or we raised: don't leave ffmpeg running
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stderr.close()


def _ffmpeg_says(stderr: IO[bytes]) -> str:
    """ffmpeg's complaint in one line: its first error (the cause) and its last (the outcome)."""
    stderr.flush()
    stderr.seek(0)
    # Drop the "[dec:h264 @ 0x55...]" prefixes: addresses mean nothing to a user.
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())[:200]
             for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] if lines[0] == lines[-1] else f"{lines[0]} ... {lines[-1]}"


def _fraction(fps: float) -> str:
    """fps as ffmpeg wants it: 29.97 becomes 30000/1001, not a float that drifts over an hour."""
    rate = Fraction(fps).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"


# -------------------------------------------------------------------------------------- encoding

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
               "-framerate", _fraction(opts.fps), "-i", "pipe:0"]
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
        message = _ffmpeg_says(self._stderr)
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
