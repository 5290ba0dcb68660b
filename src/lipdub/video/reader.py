"""Probing media files (PyAV) and streaming their frames out through ffmpeg."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lipdub.errors import InputError
from lipdub.video.ffmpeg import ffmpeg_exe, ffmpeg_says, rate_fraction

DEFAULT_MAX_INPUT_BYTES = 4 * 1024 ** 3
# Containers whose header states the duration. Elsewhere (MPEG-PS/TS, raw H.264, WebM recorded by a
# browser) ffmpeg guesses it, from the last timestamp minus a frame or from the bitrate.
_INDEXED_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"}
# Demuxers that draw text files (ANSI art, .txt) as video: never a face video.
_TEXT_FORMATS = {"tty", "bin", "xbin", "adf", "idf"}


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
           "-map", "0:v:0", "-vf", f"fps={rate_fraction(fps)}{resize}", "-pix_fmt", "rgb24", "-f", "rawvideo"]
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
                raise InputError(f"ffmpeg stopped mid-frame decoding {info.path}: {ffmpeg_says(stderr)}")
            n_read += 1
            yield frame
        if proc.wait() != 0:
            raise InputError(f"decoding {info.path} failed after {n_read} frames: {ffmpeg_says(stderr)}")
        message = ffmpeg_says(stderr)
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
