"""lipdub.metrics: image metrics on known frames, mouth-signal metrics on known series, and
compare_videos on synthetic clips (identical, delayed by 3 frames, resized, shorter)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from fixtures import astronaut, talking_frames, write_video
from lipdub.errors import InputError
from lipdub.metrics import (abs_diff_stats, best_lag, compare_videos, format_report, lip_shape, lmd,
                            pearson, psnr, sharpness, ssim)

RNG_SEED = 1234


@pytest.fixture()
def photo() -> np.ndarray:
    return astronaut()


# --- image metrics ------------------------------------------------------------------------------

def test_identical_frames_are_perfect(photo):
    assert psnr(photo, photo.copy()) == math.inf
    assert ssim(photo, photo.copy()) == 1.0
    stats = abs_diff_stats(photo, photo.copy())
    assert stats.max_abs == 0 and stats.mean_abs == 0.0 and stats.identical_share == 1.0


def test_constant_offset_gives_exact_psnr():
    a = np.random.default_rng(RNG_SEED).integers(0, 246, (40, 60, 3), dtype=np.uint8)
    b = a + 10  # no wrap-around: a < 246
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 10), abs=1e-12)
    assert psnr(b, a) == psnr(a, b)
    stats = abs_diff_stats(a, b)
    assert stats.max_abs == 10 and stats.mean_abs == 10.0 and stats.identical_share == 0.0


def test_noise_lowers_ssim_monotonically(photo):
    rng = np.random.default_rng(RNG_SEED)
    scores = []
    for sigma in (2, 10, 40):
        noisy = np.clip(photo + rng.normal(0, sigma, photo.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(photo, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0
    assert scores[2] < 0.6  # heavy noise really is judged dissimilar


def test_masked_metrics_ignore_unmasked_pixels(photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[100:200, 150:300] = True
    outside_changed = photo.copy()
    outside_changed[~mask] = 255 - outside_changed[~mask]
    assert psnr(photo, outside_changed, mask=mask) == math.inf
    assert psnr(photo, outside_changed) < 15
    inside_offset = photo.astype(np.int16)
    inside_offset[mask] = np.clip(inside_offset[mask], 0, 245) + 10
    inside_offset = inside_offset.astype(np.uint8)
    reference = photo.copy()
    reference[mask] = np.clip(reference[mask], 0, 245)
    assert psnr(reference, inside_offset, mask=mask) == pytest.approx(20 * math.log10(25.5), abs=1e-12)
    assert abs_diff_stats(photo, outside_changed, mask=mask).identical_share == 1.0
    with pytest.raises(ValueError):
        psnr(photo, photo, mask=np.zeros_like(mask))


def test_identical_share_counts_whole_pixels():
    a = np.zeros((10, 10, 3), np.uint8)
    b = a.copy()
    b[:5, :, 2] = 1  # half the pixels differ in one channel only
    assert abs_diff_stats(a, b).identical_share == 0.5


def test_sharpness_drops_with_blur(photo):
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)
    assert sharpness(blurred) < 0.2 * sharpness(photo)
    assert sharpness(np.full((32, 32, 3), 7, np.uint8)) == 0.0


def test_mismatched_shapes_are_rejected_and_views_accepted(photo):
    with pytest.raises(ValueError):
        psnr(photo, photo[:-1])
    mirrored = photo[:, ::-1]  # a strided view, as slicing produces: OpenCV needs a copy
    assert psnr(mirrored, mirrored.copy()) == math.inf
    assert ssim(mirrored, mirrored.copy()) == 1.0


# --- mouth signals ------------------------------------------------------------------------------

def smooth_noise(n: int, seed: int = RNG_SEED) -> np.ndarray:
    """A non-periodic, speech-like wiggle, so only one lag can line two copies up."""
    raw = np.random.default_rng(seed).normal(size=n + 8)
    return np.convolve(raw, np.ones(5) / 5, mode="valid")[:n]


def test_pearson_basics():
    x = smooth_noise(60)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    with_gaps = 2 * x + 1
    with_gaps[::7] = np.nan
    assert pearson(x, with_gaps) == pytest.approx(1.0)
    assert math.isnan(pearson(x, np.full_like(x, 3.0)))
    assert math.isnan(pearson(x[:2], x[:2]))


@pytest.mark.parametrize("shift", [3, -3, 0])
def test_best_lag_recovers_shift_with_documented_sign(shift):
    # Positive lag = B late: B shows at t + lag what A showed at t.
    signal = smooth_noise(100)
    a = signal[10:90]
    b = signal[10 - shift:90 - shift]
    lag, r = best_lag(a, b, max_lag=10)
    assert lag == shift
    assert r == pytest.approx(1.0)


def test_best_lag_prefers_small_lag_on_periodic_motion():
    # Period 10: lags +3 and -7 line up equally well; the smaller offset is the plausible one.
    t = np.arange(80)
    a = np.maximum(0, np.sin(2 * np.pi * t / 10))
    b = np.maximum(0, np.sin(2 * np.pi * (t - 3) / 10))
    assert best_lag(a, b, max_lag=10)[0] == 3


def test_best_lag_without_data():
    lag, r = best_lag(np.full(20, np.nan), np.arange(20.0))
    assert lag is None and math.isnan(r)


@pytest.fixture(scope="module")
def face_landmarks() -> np.ndarray:
    """Real MediaPipe landmarks of the astronaut photo (478, 3), pixels."""
    from lipdub.face import FaceTracker

    with FaceTracker(mode="image") as tracker:
        lm = tracker.track(astronaut())
    assert lm is not None
    return np.asarray(lm, np.float32)


def test_lmd_zero_for_same_and_grows_with_lip_scale(face_landmarks):
    from lipdub.face import LIPS_INNER, LIPS_OUTER, inter_ocular

    track = np.repeat(face_landmarks[None], 6, axis=0)
    track[3] = np.nan  # a frame without a face is skipped, not counted as an error
    assert lmd(track, track.copy()) == 0.0

    lips = np.unique(np.r_[np.ravel(LIPS_OUTER), np.ravel(LIPS_INNER)])
    scaled = track.copy()
    centre = scaled[:, lips, :2].mean(axis=1, keepdims=True)
    scaled[:, lips, :2] = centre + 1.1 * (scaled[:, lips, :2] - centre)
    # Scaling about the centroid by 1.1 moves each point by 0.1 of its distance from the centroid.
    radius = np.linalg.norm(face_landmarks[lips, :2] - face_landmarks[lips, :2].mean(axis=0), axis=1)
    expected = 0.1 * radius.mean() / float(np.ravel(inter_ocular(face_landmarks[None]))[0])
    assert lmd(track, scaled) == pytest.approx(expected, rel=1e-4)
    assert 0.005 < expected < 0.1  # lips span a fraction of the eye distance

    # Moving and resizing the whole face changes nothing: LMD compares lip shape only.
    moved = track.copy()
    moved[..., :2] = moved[..., :2] * 1.7 + 40
    assert lmd(track, moved) == pytest.approx(0.0, abs=1e-5)
    assert np.isnan(lip_shape(track)[3]).all()


# --- whole videos -------------------------------------------------------------------------------

def assert_strict_json(result: dict) -> None:
    json.dumps(result, allow_nan=False)


def test_compare_clip_with_itself(talking_clip):
    result = compare_videos(talking_clip, talking_clip)
    assert_strict_json(result)
    assert result["frames"] == {"a": 50, "b": 50, "compared": 50}
    assert result["psnr"]["mean"] == "inf" and result["psnr"]["identical_frames"] == 50
    assert result["ssim"]["mean"] == 1.0 and result["pixels"]["max_abs_diff"] == 0
    mouth = result["mouth"]
    assert mouth["faces_found"] == {"a": 50, "b": 50}
    assert mouth["r"] == pytest.approx(1.0) and mouth["lag"] == 0 and mouth["lmd"] == 0.0
    assert result["b_resized"] is False and result["notes"] == []
    assert "inf" in format_report(result)


@pytest.fixture(scope="module")
def delayed_clip(tmp_path_factory):
    """The talking clip with B late by 3 frames: its first frame held 3 frames, then frames 0..46."""
    frames = list(talking_frames(50))
    path = tmp_path_factory.mktemp("metrics") / "delayed.mp4"
    return write_video(path, [frames[0]] * 3 + frames[:47], fps=25)


def test_compare_delayed_clip_finds_lag_and_writes_outputs(talking_clip, delayed_clip, tmp_path):
    from lipdub.video import probe, read_frames

    sbs, png = tmp_path / "sbs.mp4", tmp_path / "apertures.png"
    result = compare_videos(talking_clip, delayed_clip, side_by_side=sbs, plot=png)
    assert_strict_json(result)
    mouth = result["mouth"]
    assert abs(mouth["lag"] - 3) <= 1
    assert mouth["lag_r"] > 0.8
    assert mouth["r"] < mouth["lag_r"]
    assert mouth["lmd"] > 0
    assert result["psnr"]["mean"] != "inf" and result["psnr"]["identical_frames"] < 50
    assert len(result["per_frame"]["aperture_b"]) == 50

    frames = list(read_frames(sbs))
    assert frames[0].shape == (512, 1024, 3)
    assert probe(sbs).has_audio  # A's speech track came along
    # The writer cuts to the shorter of video and audio (-shortest), and the fixture's AAC track
    # ends 3 ms before its 50th frame does, so 49 frames is the writer's doing, not ours.
    assert len(frames) in (49, 50)
    assert png.stat().st_size > 10_000
    report = format_report(result)
    assert "late by 3" in report or "B late" in report


def test_compare_resizes_b_and_counts_unequal_lengths(talking_clip, tmp_path):
    from lipdub.video import probe, read_frames

    small = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in talking_frames(30)]
    path = write_video(tmp_path / "small.mp4", small, fps=25)
    sbs = tmp_path / "sbs.mp4"
    calls = []
    result = compare_videos(path, talking_clip, mouth=False, side_by_side=sbs,
                            progress=lambda stage, done: calls.append((stage, done)))
    assert calls[-1] == ("compare", 1.0)
    assert_strict_json(result)
    assert result["b_resized"] is True and result["size"] == {"a": [256, 256], "b": [512, 512]}
    assert result["frames"] == {"a": 30, "b": 50, "compared": 30}
    assert len(result["notes"]) == 2 and result["mouth"] is None
    # Down- and up-scaling blurs, but the picture is the same one.
    assert 22 < result["psnr"]["mean"] < 45 and result["ssim"]["mean"] > 0.7
    # A is silent, so nothing shortens the side-by-side: one frame per compared pair, B at A's size.
    frames = list(read_frames(sbs))
    assert len(frames) == 30 and frames[0].shape == (256, 512, 3)
    assert not probe(sbs).has_audio


def test_compare_without_faces_reports_undefined_mouth_metrics(no_face_clip):
    result = compare_videos(no_face_clip, no_face_clip)
    assert_strict_json(result)
    mouth = result["mouth"]
    assert mouth["faces_found"] == {"a": 0, "b": 0}
    assert mouth["r"] is None and mouth["lag"] is None and mouth["lmd"] is None
    assert any("no face" in note for note in result["notes"])
    assert "n/a" in format_report(result)


def test_plot_needs_mouth_tracking(talking_clip, tmp_path):
    with pytest.raises(InputError):
        compare_videos(talking_clip, talking_clip, mouth=False, plot=tmp_path / "p.png")
