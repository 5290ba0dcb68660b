"""Amplitude calibration: the monotone quantile map, silence, closures, the per-avatar cache, and
the amplitude ratio it gives on a fixture. Needs nothing from ../shared."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from lipdub.audio import AudioFeatures
from lipdub.audio.whisper import FEATURE_DIM
from lipdub.motion import (AmplitudeMap, CalibrationOptions, MotionModel, apply, avatar_amplitude_map,
                           calibrate, fit_amplitude_map, fit_avatar_map)
from lipdub.motion import evaluation as ev
from lipdub.motion import representation as rep
from lipdub.motion.calibrate import CALIBRATION_FILE
from tests.test_motion import face_track


@pytest.fixture(scope="module")
def model() -> MotionModel:
    return MotionModel.load()


def test_map_is_monotone_through_origin_and_never_negative():
    rng = np.random.default_rng(0)
    real = np.abs(rng.gamma(2.0, 0.05, 4000)) - 0.01     # some frames pressed below neutral
    pred = 0.4 * real + 0.02 + rng.normal(0, 0.01, 4000)   # shrunk, offset, noisy
    m = fit_amplitude_map(pred, real)
    a = np.linspace(-0.1, 1.0, 2001)
    f = m(a)
    assert np.all(np.diff(f) >= -1e-12)
    assert m(np.array([0.0]))[0] == 0.0
    assert f.min() >= 0.0 or np.all(f[a <= 0] <= 0)
    g = m.gains(a)
    assert np.all(g >= 0) and np.all(np.isfinite(g))
    # Quantile matching: mapped predictions share the real distribution.
    mapped = pred * m.gains(pred)
    assert abs(mapped.mean() / real.mean() - 1) < 0.05
    assert abs(np.percentile(mapped, 90) / np.percentile(real, 90) - 1) < 0.05


def test_map_roundtrips_json_and_identity_by_default():
    m = fit_amplitude_map(np.linspace(0.01, 0.1, 100), np.linspace(0.0, 0.3, 100))
    again = AmplitudeMap.from_dict(json.loads(json.dumps(m.to_dict())))
    a = np.linspace(0, 0.2, 50)
    np.testing.assert_allclose(again(a), m(a), atol=1e-5)
    np.testing.assert_allclose(AmplitudeMap()(a), a)


def test_low_predictions_map_to_closed_lips():
    # Real speech closes fully a fifth of the time; the timid model never goes below 0.03.
    real = np.r_[np.zeros(200), np.linspace(0.05, 0.4, 800)]
    pred = 0.03 + 0.3 * real
    m = fit_amplitude_map(pred, real)
    assert m(np.array([0.03]))[0] == pytest.approx(0.0, abs=1e-6)
    assert m(np.array([pred.max()]))[0] == pytest.approx(0.4, rel=0.05)


def test_silence_stays_neutral_after_calibration(model):
    n = 50
    track = face_track(model, n)
    amp = fit_amplitude_map(np.linspace(0.01, 0.05, 100), np.linspace(0.0, 0.3, 100))
    cal = calibrate(track, model, amplitude=amp)
    still = apply(cal, np.zeros((n, rep.N_POINTS, 3)), np.arange(n), CalibrationOptions(motion_smooth=0))
    np.testing.assert_allclose(still[:, list(rep.MOUTH_POINTS)], track[:, list(rep.MOUTH_POINTS)], atol=1e-2)


def test_closures_meet_the_closed_lips_and_never_cross_them(model):
    from lipdub.face import INNER_LIP_PAIRS

    n = 3
    track = face_track(model, n)
    cal = calibrate(track, model, match_range=False)
    opts = CalibrationOptions(motion_smooth=0, match_range=False)
    upper = [u for u, _ in INNER_LIP_PAIRS]
    lower = [d for _, d in INNER_LIP_PAIRS]
    # Frame 0 opens, frame 1 closes a little, frame 2 would push the lower lip far past the upper.
    off = np.zeros((n, rep.N_POINTS, 3), np.float32)
    for d in lower:
        off[:, rep.MOUTH_POINTS.index(d), 1] = [0.05, -0.001, -0.2]
    out = apply(cal, off, np.arange(n), opts)
    gap = (out[:, lower, 1] - out[:, upper, 1]).mean(1)   # pixels, lower lip below the upper
    neutral_gap = (track[0, lower, 1] - track[0, upper, 1]).mean()
    assert gap[0] > neutral_gap + 1                        # an opening is drawn as asked
    assert neutral_gap > 0.1 and 0 < gap[1] < neutral_gap  # closing past the neutral is allowed ...
    assert -0.05 <= gap[2] < gap[1] and gap[2] < 0.05      # ... down to where the lips meet, no further
    pair = out[2, lower, 1] - out[2, upper, 1]
    assert (pair >= np.minimum(0.0, track[0, lower, 1] - track[0, upper, 1]) - 0.05).all()


def _fixture_avatar(model, n=300, amplitude=2.5, seed=1):
    """Features of random 'speech' plus a track whose real mouth opens like the model's own
    prediction for that audio, ``amplitude`` times wider (a speaker the model under-predicts)."""
    rng = np.random.default_rng(seed)
    vad = np.ones(n, np.float32)
    vad[:20] = vad[-20:] = 0
    feats = AudioFeatures(fps=25.0, n_frames=n, duration=n / 25.0,
                          mel=rng.uniform(-4, 0, (n, 80, 16)).astype(np.float32),
                          whisper=rng.normal(0, 1, (n, FEATURE_DIM)).astype(np.float32), vad=vad)
    off = model.predict(feats).offsets
    track = face_track(model, n, angle=0.05)
    cal = calibrate(track, model, match_range=False)
    real_off = off * amplitude
    real = apply(cal, real_off, np.arange(n), CalibrationOptions(motion_smooth=0, match_range=False))
    return feats, real, off * amplitude


def test_self_calibration_amplitude_ratio_on_fixture(model, tmp_path):
    feats, track, real_off = _fixture_avatar(model)
    n = len(track)
    uncal = calibrate(track, model, match_range=False)
    mouth, _, _ = rep.to_canonical(track, model.reference)
    real_ap = rep.aperture((mouth - rep.neutral_shape(mouth)).reshape(n, -1))
    speech = np.zeros(n, bool)
    speech[30:-30] = True
    pred_off = model.predict(feats).offsets
    raw = apply(uncal, pred_off, np.arange(n), CalibrationOptions(motion_smooth=1.0, match_range=False))

    class Avatar:  # the attributes avatar_amplitude_map reads
        path, manifest, landmarks = tmp_path, {"kind": "video", "has_features": True}, track

        def features(self):
            return feats

    amp = avatar_amplitude_map(Avatar(), model)
    assert amp.source == "avatar"
    cached = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    assert cached["map"]["speech_frames"] >= 100
    calibrated = apply(calibrate(track, model, amplitude=amp), pred_off, np.arange(n),
                       CalibrationOptions(motion_smooth=1.0))

    def ap(lms):
        m, _, _ = rep.to_canonical(lms, model.reference)
        return rep.aperture((m - rep.neutral_shape(mouth)).reshape(n, -1))

    before = ev.amplitude_ratio(ap(raw), real_ap, speech)["mean"]
    after = ev.amplitude_ratio(ap(calibrated), real_ap, speech)["mean"]
    assert before < 0.6                      # the model alone opens far less than this speaker
    assert 0.85 <= after <= 1.15, (before, after)
    # A second call reads the cache instead of refitting.
    assert avatar_amplitude_map(Avatar(), model).to_dict()["x"] == amp.to_dict()["x"]


def test_photo_and_silent_avatars_use_the_corpus_map(model, tmp_path):
    class Photo:
        path, manifest, landmarks = tmp_path, {"kind": "photo"}, face_track(model, 5)

    corpus = AmplitudeMap.from_dict(model.manifest.get("corpus_amplitude_map"))
    assert avatar_amplitude_map(Photo(), model) == corpus
    feats = AudioFeatures(fps=25.0, n_frames=200, duration=8.0, mel=np.zeros((200, 80, 16), np.float32),
                          whisper=np.zeros((200, FEATURE_DIM), np.float32), vad=np.zeros(200, np.float32))
    assert fit_avatar_map(feats, face_track(model, 200), model) is None


def test_amplitude_ratio_and_closure_recall_metrics():
    t = np.arange(400)
    real = np.maximum(0, np.sin(t / 3.0))            # closes (0) every ~19 frames
    speech = np.ones(400, bool)
    assert ev.amplitude_ratio(0.5 * real, real, speech)["mean"] == pytest.approx(0.5)
    assert ev.closure_recall(real, real, speech)["recall"] == 1.0
    timid = 0.3 + 0.2 * real                          # never closes
    assert ev.closure_recall(timid, real, speech)["recall"] == 0.0
    late = ev.shift(real, 1)                          # one frame late still counts (±1)
    assert ev.closure_recall(late, real, speech)["recall"] == 1.0
    assert ev.lagged(late, real)["best_lag"] == -1


def test_shipped_model_loads_offline(monkeypatch):
    """No socket may be opened while loading and running the shipped model."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading the motion model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from lipdub.motion.model import MANIFEST_PATH, ONNX_PATH, MotionModel as Fresh

    m = Fresh(ONNX_PATH, json.loads(MANIFEST_PATH.read_text()), threads=1)
    out = m.run(np.zeros((40, rep.INPUT_DIM), np.float32))
    assert out.shape == (40, rep.N_DIMS) and np.isfinite(out).all()


def test_face_map_uses_the_corpus_levels_and_the_faces_range():
    corpus = fit_amplitude_map(np.linspace(0.01, 0.2, 500), np.linspace(0.0, 0.3, 500))
    from lipdub.motion.calibrate import fit_face_map

    face = fit_face_map(corpus, np.linspace(0.0, 0.6, 500))     # a face with twice the range
    a = np.linspace(0.0, 0.2, 100)
    assert np.all(np.diff(face(a)) >= -1e-12) and face(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(face(np.array(corpus.x[5:10])), 2 * corpus(np.array(corpus.x[5:10])), rtol=0.05)


def test_neutral_comes_from_usable_frames_for_generate_and_streaming_alike(model, tmp_path):
    from lipdub.motion import calibrate_avatar

    track = face_track(model, 40)
    # frames 10+ hold another shot's (differently shaped) mouth: most of the track, unusable
    mouth = list(rep.MOUTH_POINTS)
    bend = np.random.default_rng(0).normal(0, 4.0, (len(mouth), 3)).astype(np.float32)
    track[10:, mouth] += bend
    weight = np.ones(40, np.float32)
    weight[10:] = 0

    class Footage:
        path, manifest, landmarks, dub_weight = None, {}, track, weight

    neutral = calibrate_avatar(Footage(), model).neutral
    np.testing.assert_allclose(neutral, calibrate(track[:10], model).neutral, atol=1e-6)
    assert not np.allclose(neutral, calibrate(track, model).neutral, atol=1e-3)


def test_voice_match_gives_another_voice_the_avatars_range_and_keeps_timing(model):
    """A map fitted on the avatar's own voice, driven by audio the model hears as less open
    (here: its predictions scaled by 0.6), gets its quantiles re-keyed to that voice."""
    from dataclasses import replace

    from lipdub.motion.calibrate import MIN_SPEECH_FRAMES, match_voice

    feats, track, _ = _fixture_avatar(model, amplitude=1.5)  # x1.5 / 0.6 stays under MAX_GAIN
    n = len(track)
    own = fit_avatar_map(feats, track, model)
    cal = calibrate(track, model, amplitude=AmplitudeMap.from_dict(own))

    class Quiet:  # the same model, hearing a voice whose mouth it predicts 0.6x as open
        reference, manifest, receptive_field = model.reference, model.manifest, model.receptive_field

        def predict(self, features, *a, **k):
            pred = model.predict(features, *a, **k)
            return replace(pred, offsets=pred.offsets * 0.6)

    quiet = Quiet()
    pred_own = model.predict(feats).offsets
    speech = np.zeros(n, bool)
    speech[30:-30] = True

    def mapped_aperture(c, offsets):
        lms = apply(c, offsets, np.arange(n), CalibrationOptions(motion_smooth=1.0))
        m, _, _ = rep.to_canonical(lms, model.reference)
        return rep.aperture((m - cal.neutral).reshape(n, -1))

    target = mapped_aperture(cal, pred_own)[speech].mean()
    plain = mapped_aperture(cal, pred_own * 0.6)[speech].mean()
    matched_cal = match_voice(cal, feats, quiet)
    matched = mapped_aperture(matched_cal, pred_own * 0.6)
    assert plain < 0.75 * target                        # the steep map halves a quieter voice
    assert abs(matched[speech].mean() / target - 1) < 0.1, (plain, matched[speech].mean(), target)
    # Monotone re-keying: the frame order of openings (timing) is the voice's own.
    assert np.corrcoef(matched[speech], mapped_aperture(cal, pred_own)[speech])[0, 1] > 0.97
    assert "voice-matched" in matched_cal.amplitude.source
    # Too little speech to know the voice: unchanged.
    short = AudioFeatures(fps=25.0, n_frames=MIN_SPEECH_FRAMES - 1, duration=3.96,
                          mel=feats.mel[:MIN_SPEECH_FRAMES - 1], whisper=feats.whisper[:MIN_SPEECH_FRAMES - 1],
                          vad=feats.vad[:MIN_SPEECH_FRAMES - 1])
    assert match_voice(cal, short, quiet) is cal


def test_voice_match_leaves_identity_maps_alone(model):
    """Fits that fell back to identity (no quantiles) are not re-keyed: re-keying x=(1,) would
    turn a gain of 1 into 2."""
    from lipdub.motion.calibrate import match_voice

    feats, track, _ = _fixture_avatar(model)
    for amp in (AmplitudeMap(), AmplitudeMap(source="avatar (too little motion: identity)"),
                fit_amplitude_map(np.zeros(200), np.zeros(200), source="avatar")):
        cal = calibrate(track, model, amplitude=amp)
        assert match_voice(cal, feats, model) is cal, amp.source


def test_opening_pattern_is_one_unit_of_aperture_and_finds_the_planted_pattern():
    rng = np.random.default_rng(3)
    pattern = rng.normal(0, 0.1, (rep.N_POINTS, 3)).astype(np.float32)
    pattern /= float(rep.aperture(pattern.reshape(-1)))       # one unit of aperture
    other = rng.normal(0, 0.1, (rep.N_POINTS, 3)).astype(np.float32)
    other -= float(rep.aperture(other.reshape(-1))) * pattern  # a shape change that does not open
    a = rng.gamma(2.0, 0.05, 3000)
    b = rng.normal(0, 1, 3000)                                 # independent of the opening
    frames = a[:, None] * pattern.reshape(-1) + b[:, None] * other.reshape(-1)
    d = rep.opening_pattern([frames[:1000], frames[1000:]])
    assert float(rep.aperture(d.reshape(-1))) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(d, pattern, atol=0.02 * np.abs(pattern).max())
    with pytest.raises(ValueError):
        rep.opening_pattern([np.zeros((10, rep.N_DIMS))])


def test_a_closing_frame_keeps_its_shape_at_the_avatars_typical_gain(model):
    """Near closure the map's factor f(a)/a can reach MAX_GAIN: the frame's shape is scaled by at
    most the map's typical factor and the rest of the opening is made along the opening pattern,
    so a closing mouth's spread is not blown up with it."""
    from dataclasses import replace

    from lipdub.motion.calibrate import MAX_GAIN

    assert model.opening is not None and model.opening.shape == (rep.N_POINTS, 3)
    n = 2
    track = face_track(model, n)
    # Steep near closure (a predicted 0.01 is a real 0.05), about 1x at typical openings.
    amp = AmplitudeMap((0.01, 0.1, 0.2), (0.05, 0.1, 0.2), "test")
    assert amp.typical_gain() == pytest.approx(1.0)
    cal = calibrate(track, model, amplitude=amp)
    spread = np.zeros((rep.N_POINTS, 3), np.float32)
    spread[:, 0] = np.sign(model.neutral[:, 0] - model.neutral[:, 0].mean()) * 0.02
    spread -= float(rep.aperture(spread.reshape(-1))) * model.opening
    off = np.stack([0.004 * model.opening + spread, 0.15 * model.opening + spread])
    opts = CalibrationOptions(motion_smooth=0)
    assert amp.gains(rep.aperture(off.reshape(n, -1)))[0] == pytest.approx(MAX_GAIN)
    new = apply(cal, off, np.arange(n), opts)
    old = apply(replace(cal, opening=None), off, np.arange(n), opts)
    def width(lm):  # pixels, across all mouth and jaw points
        return np.ptp(lm[:, list(rep.MOUTH_POINTS), 0], axis=1)

    def gap(lm):
        return np.asarray([_inner_gap(x) for x in lm])

    # The same opening either way; the whole-frame factor also spread the closing mouth 3x.
    np.testing.assert_allclose(gap(new), gap(old), atol=0.05)
    neutral_width = width(track)[0]
    assert width(new)[0] - neutral_width < 0.5 * (width(old)[0] - neutral_width)
    # At a typical opening the factor is ~1 and both agree.
    assert width(new)[1] == pytest.approx(width(old)[1], rel=0.02)
    # A map that shrinks near closure (factor 0.1 there) shrinks the whole closing frame, as before.
    shrink = calibrate(track, model, amplitude=AmplitudeMap((0.02, 0.1, 0.2), (0.002, 0.1, 0.2), "test"))
    np.testing.assert_allclose(apply(shrink, off, np.arange(n), opts),
                               apply(replace(shrink, opening=None), off, np.arange(n), opts), atol=1e-3)


def _inner_gap(landmarks: np.ndarray) -> float:
    """Mean vertical gap of the inner-lip pairs, pixels."""
    from lipdub.face import INNER_LIP_PAIRS

    return float(np.mean([landmarks[d, 1] - landmarks[u, 1] for u, d in INNER_LIP_PAIRS]))
