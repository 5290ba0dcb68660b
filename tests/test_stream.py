"""Real-time streaming API: chunk-size independence, idle between utterances, PCM formats."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from lipdub.audio import load_audio, n_frames_for


def stream_avatar(base: Path, talking_clip: Path) -> Path:
    """The conftest talking clip, prepared, with a 32 px renderer trained for 3 steps; made once
    per test session (shared by test_stream and test_server_live through the base temp dir)."""
    pytest.importorskip("torch")
    from lipdub.avatar import PrepareOptions, prepare
    from lipdub.render.train import TrainOptions, train_renderer

    folder = base / "stream_avatar"
    if not (folder / "renderer.onnx").exists():
        shutil.rmtree(folder, ignore_errors=True)
        avatar = prepare(talking_clip, folder, PrepareOptions(fps=25.0))
        train_renderer(avatar, TrainOptions(steps=3, size=32, batch_size=4, widths=(8, 16, 16)))
    return folder


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory, talking_clip):
    return stream_avatar(tmp_path_factory.getbasetemp(), talking_clip)


@pytest.fixture(scope="module")
def speech(speech_wav):
    return load_audio(speech_wav)


def run(avatar_dir, audio, chunk_s, **kw):
    from lipdub.stream import StreamOptions, paced_chunks, stream

    return list(stream(avatar_dir, paced_chunks(audio, chunk_s), StreamOptions(**kw)))


def test_chunk_sizes_give_the_same_frames(avatar_dir, speech):
    n = n_frames_for(speech, 25.0)
    results = {c: run(avatar_dir, speech, c) for c in (0.01, 0.032, 0.25, 1.0)}
    for c, frames in results.items():
        assert [f.index for f in frames] == list(range(n)), c
        assert np.allclose([f.time for f in frames], np.arange(n) / 25.0)
        sound = np.concatenate([f.audio for f in frames])
        assert len(sound) == round(n * 640)
        k = min(len(sound), len(speech))
        assert np.array_equal(sound[:k], speech[:k])  # the matching audio, sample for sample
        assert frames[0].image.shape == frames[-1].image.shape and frames[0].image.dtype == np.uint8
    # the mouth follows the same speech whatever the chunking (steps differ, so not bit-equal)
    ref = np.array([f.speaking for f in results[0.032]])
    for c, frames in results.items():
        assert np.mean(np.abs(np.array([f.speaking for f in frames]) - ref)) < 0.1, c


def test_frames_come_before_the_end_with_bounded_lookahead(avatar_dir, speech):
    """Frames are yielded while the audio still streams in, lookahead seconds behind it."""
    from lipdub.stream import StreamOptions, Streamer

    eng = Streamer(avatar_dir, StreamOptions(lookahead=0.2))
    fed = 0
    for s in range(0, len(speech), 320):
        fed += len(speech[s:s + 320])
        for f in eng.feed(speech[s:s + 320]):
            assert f.time + 0.2 <= fed / 16000 + 1e-9
    # the worker threads finish what was asked for before the end of the input
    deadline = time.monotonic() + 60
    while eng.frames_done < eng.asked and time.monotonic() < deadline:
        for f in eng.poll(0.1):
            assert f.time + 0.2 <= fed / 16000 + 1e-9
    assert eng.frames_done >= n_frames_for(speech, 25.0) - 0.2 * 25 - 3  # all but the lookahead
    assert len(eng.finish()) > 0


def test_silence_between_utterances_idles_with_a_neutral_mouth(avatar_dir, speech):
    from lipdub.motion import apply
    from lipdub.motion.calibrate import template_indices
    from lipdub.motion.representation import N_POINTS
    from lipdub.stream import StreamOptions, Streamer, paced_chunks, stream

    gap = 1.8
    audio = np.concatenate([speech, np.zeros(int(gap * 16000), np.float32), speech[:16000]])
    eng = Streamer(avatar_dir, StreamOptions())
    frames = list(stream(eng, paced_chunks(audio, 0.02)))
    assert len(frames) == n_frames_for(audio, 25.0)
    start = len(speech) / 16000
    quiet = [f for f in frames if start + 0.6 <= f.time <= start + gap - 0.6]
    assert len(quiet) >= 12
    assert all(f.speaking == 0.0 for f in quiet)
    # idle: the template keeps its own (ping-pong) motion under the frames
    expected = template_indices(len(frames), eng.avatar.n_frames)
    assert [f.template_index for f in frames] == expected.tolist()
    # closed, neutral mouth: exactly the calibrated neutral in that template frame's pose
    for f in quiet:
        neutral = apply(eng.cal, np.zeros((1, N_POINTS, 3), np.float32), np.array([f.template_index]))
        assert np.allclose(f.landmarks, neutral[0], atol=1e-3)
    # and the mouth does move while speaking
    talking = [f for f in frames if f.speaking > 0.9]
    assert len(talking) >= 10


def test_int16_bytes_and_float_chunks_agree(avatar_dir, speech):
    from lipdub.stream import as_float_chunk

    pcm = (np.clip(speech, -1, 1) * 32767).astype("<i2")
    assert np.allclose(as_float_chunk(pcm.tobytes()), pcm / 32768.0)
    a = run(avatar_dir, pcm.astype(np.float32) / 32768.0, 0.1)
    b_frames = list(__import__("lipdub.stream", fromlist=["stream"]).stream(
        avatar_dir, (pcm[s:s + 1600].tobytes() for s in range(0, len(pcm), 1600))))
    assert len(a) == len(b_frames)
    # nearly the same frames: the engine's steps follow when audio arrives, which varies between runs
    assert max(np.abs(x.landmarks - y.landmarks).max() for x, y in zip(a, b_frames)) < 1.0
    assert np.mean([np.abs(x.image.astype(int) - y.image).mean() for x, y in zip(a, b_frames)]) < 1.0


def test_options_validate():
    from lipdub.stream import StreamOptions

    with pytest.raises(ValueError):
        StreamOptions(lookahead=-1)
    with pytest.raises(ValueError):
        StreamOptions(whisper_window=0.1)


def test_a_photo_avatar_streams_too(tmp_path, face_png, speech):
    """Streaming uses the same mouth renderer as generate: a photo avatar needs no training."""
    from lipdub.avatar import prepare
    from lipdub.photo import PhotoOptions

    folder = prepare(face_png, tmp_path / "photo", photo=PhotoOptions(seconds=1.0)).path
    frames = run(folder, speech, 0.1)
    assert [f.index for f in frames] == list(range(n_frames_for(speech, 25.0)))
    idle = [f.template_index for f in frames]
    # the mouth moves: speaking frames differ from their idle template frame around the mouth
    from lipdub.avatar import Avatar

    avatar = Avatar.load(folder)
    speaking = [f for f in frames if f.speaking > 0.5]
    assert speaking and max(idle) < avatar.n_frames
    diffs = [np.abs(f.image[130:170, 190:260].astype(int)
                    - avatar.frame(f.template_index)[130:170, 190:260]).mean() for f in speaking]
    assert np.median(diffs) > 2.0


def test_late_frames_repeat_the_last_image_instead_of_piling_up(avatar_dir, speech):
    """max_latency: audio arriving far faster than frames can be drawn (all at once here) makes
    the engine give frames up (repeat the last image, counted) rather than queue them all."""
    from lipdub.stream import StreamOptions, Streamer, paced_chunks, stream

    eng = Streamer(avatar_dir, StreamOptions(max_latency=0.05))
    frames = list(stream(eng, paced_chunks(np.tile(speech, 3), 0.02)))
    n = n_frames_for(np.tile(speech, 3), 25.0)
    assert [f.index for f in frames] == list(range(n))  # every frame slot is still filled, in order
    repeated = [f for f in frames if f.repeated]
    assert repeated and eng.stats["repeated"] == len(repeated) and eng.stats["frames"] == n
    for prev, f in zip(frames, frames[1:]):
        if f.repeated:
            assert f.image is prev.image
    assert sum(not f.repeated for f in frames) < n


def test_single_thread_mode_gives_the_same_frames(avatar_dir, speech):
    a = run(avatar_dir, speech, 0.1, pipelined=False)
    b = run(avatar_dir, speech, 0.1)
    assert [f.index for f in a] == [f.index for f in b] == list(range(n_frames_for(speech, 25.0)))
    assert np.mean([np.abs(x.image.astype(int) - y.image).mean() for x, y in zip(a, b)]) < 1.0


def test_recorder_writes_every_frame_from_its_thread(avatar_dir, speech, tmp_path):
    from lipdub.stream import Recorder
    from lipdub.video import EncodeOptions, VideoWriter, probe

    frames = run(avatar_dir, speech[:16000], 0.1)
    h, w = frames[0].image.shape[:2]
    rec = Recorder(VideoWriter(tmp_path / "seen.mp4", w, h, EncodeOptions(fps=25.0, preset="ultrafast")))
    for f in frames:
        rec.write(f.image)
    path = rec.close()
    assert path.exists() and round(probe(path).duration * 25) == len(frames)
    rec = Recorder(VideoWriter(tmp_path / "dropped.mp4", w, h, EncodeOptions(fps=25.0)))
    rec.write(frames[0].image)
    rec.abort()
    assert not (tmp_path / "dropped.mp4").exists()
