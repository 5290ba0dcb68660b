"""lipdub.video: probing, decoding odd inputs at a constant rate, atomic H.264/AAC encoding.

Every clip is built here with the bundled ffmpeg (independently of lipdub.video), tiny and short.
Frames carry a red marker in their top-left corner (to check orientation) and a grey level that
encodes which source frame they are (to check timing).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from fixtures import write_video as encode_with_ffmpeg
from lipdub import video
from lipdub.errors import InputError, MissingDependencyError, OutputError
from lipdub.video import EncodeOptions, VideoWriter, frame_count, probe, read_frames, write_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 96, 64
RED = np.array([255, 0, 0])


def ffmpeg(*args) -> None:
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", *map(str, args)], check=True, capture_output=True)


def encoders() -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def marked(level: int, w: int = W, h: int = H, marker: int = 16) -> np.ndarray:
    """A grey frame at `level` with a red square in the top-left corner."""
    frame = np.full((h, w, 3), level, np.uint8)
    frame[:marker, :marker] = RED
    return frame


def level_of(frame: np.ndarray) -> float:
    """The grey level of a frame, read away from the marker."""
    h, w = frame.shape[:2]
    return float(frame[h // 2:, w // 2:].mean())


def corner_is_red(frame: np.ndarray, corner: str) -> bool:
    h, w = frame.shape[:2]
    ys = slice(0, 8) if corner[0] == "t" else slice(h - 8, h)
    xs = slice(0, 8) if corner[1] == "l" else slice(w - 8, w)
    return bool(np.abs(frame[ys, xs].reshape(-1, 3).mean(0) - RED).max() < 30)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video_clips")


@pytest.fixture(scope="module")
def h264_clip(clips) -> Path:
    """10 frames at 25 fps (0.4 s), levels 40, 55, ... so each frame is recognisable."""
    return encode_with_ffmpeg(clips / "h264.mp4", [marked(40 + 15 * k) for k in range(10)], fps=25,
                              extra_output=["-crf", "10"])


@pytest.fixture(scope="module")
def tone_wav(clips) -> Path:
    """1.3 s of a 440 Hz tone at 22.05 kHz."""
    path = clips / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1.3:sample_rate=22050", path)
    return path


# ------------------------------------------------------------------------------------------ probe

def test_probe_reports_a_plain_h264_clip(h264_clip):
    info = probe(h264_clip)
    assert (info.is_image, info.has_video, info.has_audio) == (False, True, False)
    assert (info.width, info.height, info.rotation, info.video_codec) == (W, H, 0, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(0.4, abs=1e-3)
    assert info.n_frames == 10
    with pytest.raises(AttributeError):  # frozen
        info.width = 1


def test_probe_audio_only_file(tone_wav):
    info = probe(tone_wav)
    assert (info.has_video, info.has_audio, info.is_image) == (False, True, False)
    assert info.audio_sample_rate == 22050
    assert info.duration == pytest.approx(1.3, abs=0.01)
    assert info.audio_duration == pytest.approx(1.3, abs=0.01)
    with pytest.raises(InputError, match="no video stream"):
        read_frames(tone_wav)


def test_probe_and_read_png_yield_the_image_once(clips):
    path = clips / "still.png"
    image = marked(90, 65, 33)  # odd sizes are kept as they are without max_size
    Image.fromarray(image).save(path)
    info = probe(path)
    assert (info.is_image, info.width, info.height, info.n_frames) == (True, 65, 33, 1)
    assert frame_count(path, 25) == 1
    frames = list(read_frames(path, fps=25))
    assert len(frames) == 1 and np.array_equal(frames[0], image)
    (small,) = read_frames(path, max_size=32)
    assert small.shape == (16, 32, 3) and corner_is_red(small, "tl")


def test_jpeg_exif_orientation_is_applied(clips):
    path = clips / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display turned 90 degrees clockwise
    Image.fromarray(marked(90)).save(path, quality=95, exif=exif)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (H, W, 90)
    (frame,) = read_frames(path)
    assert frame.shape == (W, H, 3) and corner_is_red(frame, "tr")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"), ("directory", "directory"), ("empty", "empty file"),
    ("text", "not a media file"), ("no_index", "not a media file, or corrupt"),
    ("subtitles", "no video or audio stream"), ("ansi_text", "is text"),
])
def test_probe_refuses_unusable_files(clips, h264_clip, case, message):
    path = clips / f"bad_{case}.mp4"
    if case == "directory":
        path.mkdir(exist_ok=True)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not a video\n" * 20)
    elif case == "no_index":  # an MP4 cut before its index (the moov box comes last without faststart)
        path.write_bytes(h264_clip.read_bytes()[: h264_clip.stat().st_size // 2])
    elif case == "ansi_text":  # ffmpeg's tty demuxer would happily "play" this
        path = clips / "notes.ans"
        path.write_text("hello\n")
    elif case == "subtitles":
        path = clips / "bad.srt"
        path.write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(InputError, match=message) as caught:
        probe(path)
    assert path.name in str(caught.value) and "\n" not in str(caught.value)


def test_probe_refuses_files_over_the_size_limit(h264_clip, monkeypatch):
    monkeypatch.setenv("LIPDUB_MAX_INPUT_BYTES", "1000")
    with pytest.raises(InputError, match="LIPDUB_MAX_INPUT_BYTES"):
        probe(h264_clip)
    monkeypatch.setenv("LIPDUB_MAX_INPUT_BYTES", str(10 ** 9))
    assert probe(h264_clip).has_video


def test_ffmpeg_exe_falls_back_to_path_then_fails_clearly(monkeypatch):
    def no_bundle():
        raise RuntimeError("no binary")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_bundle)
    monkeypatch.setattr(video.ffmpeg.shutil, "which", lambda name: "/opt/bin/ffmpeg" if name == "ffmpeg" else None)
    assert video.ffmpeg_exe() == "/opt/bin/ffmpeg"
    monkeypatch.setattr(video.ffmpeg.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="imageio-ffmpeg"):
        video.ffmpeg_exe()


# ----------------------------------------------------------------------------------------- decode

CODECS = [  # (decoder name, encoder, suffix, extra encoder options)
    ("h264", "libx264", ".mp4", ["-crf", "10"]),
    ("hevc", "libx265", ".mp4", ["-crf", "10", "-x265-params", "log-level=error"]),
    ("mpeg4", "mpeg4", ".mp4", ["-q:v", "2"]),
    ("vp9", "libvpx-vp9", ".webm", ["-deadline", "realtime", "-cpu-used", "8", "-crf", "10", "-b:v", "0"]),
    ("mpeg1video", "mpeg1video", ".mpg", ["-q:v", "2"]),
]


@pytest.mark.parametrize("codec, encoder, suffix, extra", CODECS, ids=[c[0] for c in CODECS])
def test_each_codec_decodes_every_frame_in_order(clips, codec, encoder, suffix, extra):
    if f" {encoder} " not in encoders():
        pytest.skip(f"the bundled ffmpeg has no {encoder} encoder")
    path = encode_with_ffmpeg(clips / f"codec_{codec}{suffix}", [marked(40 + 15 * k) for k in range(10)],
                              fps=25, codec=encoder, extra_output=extra)
    assert probe(path).video_codec == codec
    frames = list(read_frames(path, fps=25))
    assert len(frames) == frame_count(path, 25) == 10
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert all(corner_is_red(f, "tl") for f in frames)
    assert np.allclose([level_of(f) for f in frames], [40 + 15 * k for k in range(10)], atol=4)


@pytest.mark.parametrize("display_rotation, clockwise, corner",
                         [(-90, 90, "tr"), (90, 270, "bl"), (180, 180, "br")])
def test_rotation_metadata_is_applied(clips, h264_clip, display_rotation, clockwise, corner):
    # -display_rotation is counter-clockwise; phones write -90 (the old "rotate=90" tag).
    path = clips / f"rotated_{clockwise}.mp4"
    ffmpeg("-display_rotation", display_rotation, "-i", h264_clip, "-c", "copy", path)
    info = probe(path)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((H, W) if clockwise != 180 else (W, H))
    frames = list(read_frames(path))
    assert len(frames) == 10 and frames[0].shape == (info.height, info.width, 3)
    assert corner_is_red(frames[0], corner) and not corner_is_red(frames[0], "tl")


def test_30fps_is_resampled_to_25fps_by_nearest_time(clips):
    path = encode_with_ffmpeg(clips / "r30.mp4", [marked(10 + 7 * k) for k in range(30)], fps=30,
                              extra_output=["-qp", "0"])
    frames = list(read_frames(path, fps=25))
    assert len(frames) == frame_count(path, 25) == 25
    sources = [round((level_of(f) - 10) / 7) for f in frames]
    assert sources == sorted(set(sources))  # no repeats, never back in time
    # Output frame i (time i/25) shows the source frame nearest that instant, within half a tick.
    assert all(abs(k / 30 - i / 25) <= 0.5 / 25 + 1e-9 for i, k in enumerate(sources))


def test_variable_frame_rate_becomes_constant(clips):
    # Segments start 0.01 s before a 25 fps tick, so "the picture shown at i/25" is unambiguous.
    starts = [0.0, 0.11, 0.43, 0.51, 0.75, 0.95]
    levels = [30, 60, 90, 120, 150, 180]
    source = [marked(levels[np.searchsorted(starts, t / 100, side="right") - 1]) for t in range(105)]
    cfr = encode_with_ffmpeg(clips / "cfr100.mp4", source, fps=100, extra_output=["-qp", "0"])
    picks = "+".join(f"eq(n,{round(s * 100)})" for s in starts + [1.04])  # 1.04 keeps the real end
    path = clips / "vfr.mp4"
    ffmpeg("-i", cfr, "-vf", f"select='{picks}'", "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0", path)
    with av.open(str(path)) as container:  # really variable: 7 frames at uneven gaps
        assert container.streams.video[0].frames == 7
    frames = list(read_frames(path, fps=25))
    assert len(frames) == frame_count(path, 25) == 26  # 1.05 s
    for i, frame in enumerate(frames):
        shown = levels[np.searchsorted(starts, i / 25, side="right") - 1]
        assert level_of(frame) == pytest.approx(shown, abs=3), f"frame {i}"


def test_slideshow_with_a_guessed_last_frame_length_stops_at_its_duration(clips):
    # A concat-demuxer slideshow whose B-frames leave the decoder guessing the last picture's length
    # (0.28 s): ffmpeg's fps filter alone yields 32 frames (1.28 s) for a file that lasts 1.04 s.
    # The exact pictures matter (they decide x264's B-frames), hence ffmpeg's own colour source.
    lines = ["ffconcat version 1.0"]
    for k, seconds in enumerate([0.1, 0.3, 0.05, 0.25, 0.2, 0.1]):
        ffmpeg("-f", "lavfi", "-i", f"color=c=0x{k}0{k}0{k}0:size=64x48", "-frames:v", 1, clips / f"slide{k}.png")
        lines += [f"file slide{k}.png", f"duration {seconds}"]
    lines.append("file slide5.png")  # the concat demuxer's way to give the last picture its duration
    (clips / "slides.txt").write_text("\n".join(lines) + "\n")
    path = clips / "slides.mp4"
    ffmpeg("-f", "concat", "-safe", 0, "-i", clips / "slides.txt", "-fps_mode", "vfr", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", path)
    frames = list(read_frames(path, fps=25))
    assert len(frames) == frame_count(path, 25) == round(probe(path).duration * 25) == 26
    levels = [level_of(f) for f in frames]
    assert levels == sorted(levels) and levels[-1] == pytest.approx(80, abs=3)


def test_cover_art_is_not_video(clips, tone_wav):
    if " libmp3lame " not in encoders():
        pytest.skip("the bundled ffmpeg has no MP3 encoder")
    Image.fromarray(marked(90)).save(clips / "cover.png")
    path = clips / "song.mp3"
    ffmpeg("-i", tone_wav, "-i", clips / "cover.png", "-map", 0, "-map", 1, "-c:a", "libmp3lame", "-c:v", "png",
           "-disposition:v", "attached_pic", path)
    info = probe(path)
    assert (info.has_video, info.has_audio) == (False, True)
    assert info.duration == pytest.approx(1.3, abs=0.05)


def test_portrait_1080x1920_is_downscaled_to_max_size(clips):
    path = encode_with_ffmpeg(clips / "portrait.mp4", [marked(100, 1080, 1920, marker=160)] * 3, fps=25,
                              extra_output=["-preset", "ultrafast"])
    info = probe(path)
    assert (info.width, info.height) == (1080, 1920)
    frames = list(read_frames(path, max_size=320))
    assert len(frames) == 3 and frames[0].shape == (320, 180, 3)
    assert corner_is_red(frames[0], "tl") and level_of(frames[0]) == pytest.approx(100, abs=3)
    full = next(read_frames(path))
    assert full.shape == (1920, 1080, 3)


def test_closing_the_iterator_early_kills_ffmpeg(h264_clip, monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(video.reader.subprocess, "Popen", recording_popen)
    frames = read_frames(h264_clip)
    next(frames)
    assert len(started) == 1 and started[0].poll() is None  # still decoding
    frames.close()
    assert started[0].returncode is not None


def test_truncated_file_raises_input_error_mid_stream(clips):
    noisy = [np.random.default_rng(k).integers(0, 256, (H, W, 3), dtype=np.uint8) for k in range(25)]
    path = encode_with_ffmpeg(clips / "full.mp4", noisy, fps=25, extra_output=["-movflags", "+faststart"])
    truncated = clips / "truncated.mp4"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    received = []
    with pytest.raises(InputError, match="corrupt or truncated") as caught:
        for frame in read_frames(truncated):
            received.append(frame)
    assert 0 < len(received) < 25 and "truncated.mp4" in str(caught.value)


def test_ffmpeg_failure_mid_stream_raises_input_error(clips, h264_clip, monkeypatch):
    fake = clips / "fake_ffmpeg.sh"  # yields one frame, then dies with a message
    fake.write_text(f"#!/bin/sh\nhead -c {W * H * 3} /dev/zero\necho 'disk on fire' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(video.reader, "ffmpeg_exe", lambda: str(fake))
    received = []
    with pytest.raises(InputError, match="failed after 1 frames: disk on fire"):
        for frame in read_frames(h264_clip):
            received.append(frame)
    assert len(received) == 1


# ----------------------------------------------------------------------------------------- encode

def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types, in file order."""
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        boxes.append(data[offset + 4:offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        offset += max(size, 8)
    return boxes


def test_encoded_video_matches_the_audio_length_and_format(clips, tone_wav):
    n = round(probe(tone_wav).audio_duration * 25)
    out = write_video((marked(40 + 4 * k) for k in range(n)), clips / "with_audio.mp4", audio=tone_wav)
    info = probe(out)
    assert info.duration == pytest.approx(1.3, abs=1 / 25)
    assert info.audio_duration == pytest.approx(1.3, abs=1 / 25)
    with av.open(str(out)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.format.name, a.codec_context.name) == ("h264", "yuv420p", "aac")
        assert v.average_rate == 25 and v.frames == n
        cc = v.codec_context  # tagged BT.709 (1), as converted
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1)
        assert container.duration / 1e6 == pytest.approx(1.3, abs=1 / 25)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart
    assert not list(clips.glob("*.partial*"))


def test_fewer_frames_than_audio_never_make_a_longer_file(clips, tone_wav):
    out = write_video([marked(80)] * 20, clips / "short.mp4", audio=tone_wav)
    with av.open(str(out)) as container:
        assert container.duration / 1e6 <= 20 / 25 + 0.005
    assert probe(out).audio_duration <= 20 / 25 + 0.005


def test_audio_can_come_from_a_video_file(clips, tone_wav):
    source = encode_with_ffmpeg(clips / "speaker.mp4", [marked(50)] * 33, fps=25, audio=tone_wav)
    out = write_video([marked(200)] * 33, clips / "redub.mp4", audio=source)
    info = probe(out)
    assert info.has_audio and info.audio_duration == pytest.approx(1.3, abs=1 / 25)
    assert level_of(next(read_frames(out))) == pytest.approx(200, abs=3)  # our frames, not the source's


def test_colours_survive_an_encode_decode_round_trip(clips):
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:32], frame[32:] = (200, 40, 40), (30, 160, 220)
    out = write_video([frame] * 5, clips / "colours.mp4", options=EncodeOptions(crf=10))
    decoded = next(read_frames(out))
    inner = np.r_[0:28, 36:64]  # away from the colour edge, where chroma is shared
    assert np.abs(decoded[inner].astype(int) - frame[inner]).max() <= 4


def test_odd_sizes_are_padded_by_repeating_the_edge(clips):
    frame = np.full((47, 63, 3), 60, np.uint8)
    frame[:, -1] = (230, 230, 230)  # a bright last column, which the padding should repeat
    out = write_video([frame] * 3, clips / "odd.mp4", options=EncodeOptions(crf=5))
    info = probe(out)
    assert (info.width, info.height) == (64, 48)
    decoded = next(read_frames(out))
    assert decoded[:, -2:].mean() > 215 and decoded[-1, :32].mean() == pytest.approx(60, abs=4)


def test_higher_crf_gives_a_smaller_file(clips):
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(128, 40, (96, 128, 3)), 0, 255).astype(np.uint8) for _ in range(8)]
    fine = write_video(frames, clips / "crf10.mp4", options=EncodeOptions(crf=10))
    coarse = write_video(frames, clips / "crf40.mp4", options=EncodeOptions(crf=40))
    assert coarse.stat().st_size < 0.5 * fine.stat().st_size


def test_write_video_resizes_to_size(clips):
    out = write_video([marked(120, 200, 100)] * 2, clips / "resized.mp4", size=(100, 50))
    assert isinstance(out, Path) and (probe(out).width, probe(out).height) == (100, 50)


def test_exception_mid_write_leaves_no_file_and_keeps_the_old_one(clips):
    fresh, existing = clips / "never.mp4", clips / "existing.mp4"
    existing.write_bytes(b"precious")
    for target in (fresh, existing):
        with pytest.raises(RuntimeError, match="renderer crashed"):
            with VideoWriter(target, W, H) as writer:
                writer.write(marked(10))
                assert writer.partial_path.exists()
                raise RuntimeError("renderer crashed")
        assert not writer.partial_path.exists()
    assert not fresh.exists() and existing.read_bytes() == b"precious"


def test_ffmpeg_dying_mid_write_raises_output_error_atomically(clips):
    existing = clips / "existing2.mp4"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputError, match="ffmpeg"):
        with VideoWriter(existing, W, H) as writer:
            writer.write(marked(10))
            writer._proc.kill()  # stands in for a crash or a full disk
            writer._proc.wait()
            for _ in range(100):
                writer.write(marked(10))
    assert existing.read_bytes() == b"precious" and not writer.partial_path.exists()


def test_ffmpeg_error_message_is_passed_on(clips):
    with pytest.raises(OutputError, match="nonsense"):
        write_video([marked(10)] * 30, clips / "badfmt.mp4", options=EncodeOptions(pix_fmt="nonsense"))
    assert not list(clips.glob("badfmt*"))


def test_unwritable_output_fails_before_any_work(clips, monkeypatch):
    def no_ffmpeg(*args, **kwargs):
        raise AssertionError("ffmpeg must not start for an unwritable output")

    monkeypatch.setattr(video.writer.subprocess, "Popen", no_ffmpeg)
    a_file = clips / "plain_file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        VideoWriter(a_file / "out.mp4", W, H)  # its "folder" is a file
    with pytest.raises(OutputError, match="directory"):
        VideoWriter(clips, W, H)


def test_no_frames_is_an_output_error_and_leaves_nothing(clips):
    target = clips / "empty_out.mp4"
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(target, W, H):
            pass
    assert not target.exists() and not list(clips.glob("empty_out*"))


def test_writer_rejects_bad_frames_and_options(clips, tone_wav):
    with VideoWriter(clips / "strict.mp4", W, H) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((H, W, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(64, 96, 3\)"):
            writer.write(np.zeros((H + 2, W, 3), np.uint8))
        assert writer.write_many(marked(k) for k in range(3)) == 3
    assert probe(clips / "strict.mp4").n_frames == 3
    for bad in (dict(crf=60), dict(fps=0), dict(preset="warp")):
        with pytest.raises(ValueError):
            EncodeOptions(**bad)
    with pytest.raises(InputError, match="no audio stream"):
        VideoWriter(clips / "x.mp4", W, H, audio=clips / "h264.mp4")
    assert not (clips / "x.mp4.partial.mp4").exists()


# ------------------------------------------------------------------------- checking what is written

def test_audio_shorter_than_a_frame_never_leaves_a_video_without_a_picture(clips):
    """ffmpeg (-shortest) exits 0 and writes a file with no video stream for 10 ms of audio:
    the writer's check refuses it and leaves nothing, and an older file in its place survives."""
    short = clips / "10ms.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=0.01", "-ar", "16000", str(short))
    out = clips / "sub_frame.mp4"
    out.write_bytes(b"older")
    with pytest.raises(OutputError, match="has no video frames"):
        write_video([marked(100)], out, audio=short)
    assert out.read_bytes() == b"older" and not list(clips.glob("sub_frame*.partial*"))


def test_a_video_shorter_than_the_expected_length_is_refused(clips, tone_wav):
    out = clips / "too_short.mp4"
    with pytest.raises(OutputError, match=r"0\.800 s of video, not the expected 1\.300 s"):
        write_video([marked(80)] * 20, out, audio=tone_wav, expected_seconds=1.3)
    assert not out.exists() and not list(clips.glob("too_short*"))
    n = round(1.3 * 25)  # the right number of frames passes, within a frame of the audio
    write_video([marked(80)] * n, out, audio=tone_wav, expected_seconds=1.3)
    assert probe(out).n_frames == n


def test_verify_output_names_what_is_missing(clips, tone_wav, h264_clip):
    info = video.verify_output(h264_clip, None, 25.0, audio=False)
    assert info.has_video
    with pytest.raises(OutputError, match="no audio track"):
        video.verify_output(h264_clip, None, 25.0, audio=True)
    with pytest.raises(OutputError, match="no video frames"):
        video.verify_output(tone_wav, None, 25.0, audio=True)
    junk = clips / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 100)
    with pytest.raises(OutputError, match="unreadable"):
        video.verify_output(junk, 1.0, 25.0)


def test_output_under_a_file_is_refused_before_any_work(clips):
    blocker = clips / "plain_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="plain_file is a file, not a folder"):
        VideoWriter(blocker / "sub" / "o.mp4", 16, 16)


def test_an_output_over_the_input_size_limit_is_still_checked_not_refused(clips, tone_wav, monkeypatch):
    monkeypatch.setenv("LIPDUB_MAX_INPUT_BYTES", "1000")  # inputs that big are refused...
    out = write_video([marked(40 + 6 * k) for k in range(30)], clips / "big_output.mp4")
    assert out.stat().st_size > 1000  # ...but an output that big is ours, and fine
    with pytest.raises(InputError, match="input limit"):
        probe(out)
