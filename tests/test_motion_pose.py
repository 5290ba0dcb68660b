"""The pose part of a template frame's mouth (lipdub.motion.pose) and its use in calibration.
Needs nothing from ../shared: tracks are the model's reference face, posed and deformed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.face import INNER_LIP_PAIRS, STABLE_POINTS
from lipdub.motion import CalibrationOptions, MotionModel, apply, calibrate
from lipdub.motion import representation as rep
from lipdub.motion.pose import JAW_SLOTS, POSE_POINTS, pose_deformation, pose_points
from tests.test_motion import face_track

#: Pose points that do not drive the alignment: moving them turns the "head" without re-aligning it.
FREE = [p for p in POSE_POINTS if p not in STABLE_POINTS]
JAW = list(rep.JAW_POINTS)
LOWER = [d for _, d in INNER_LIP_PAIRS]


@pytest.fixture(scope="module")
def model() -> MotionModel:
    return MotionModel.load()


def turning_track(model, n=200, seed=0, nod_with_speech=False):
    """A track whose head turns (``turn``: the free pose points slide sideways, and with them the
    jaw line, as a silhouette does) while the lower lip opens by ``speech``, independently."""
    rng = np.random.default_rng(seed)
    track = face_track(model, n)
    turn = np.sin(np.linspace(0, 6 * np.pi, n)).astype(np.float32)
    speech = np.clip(rng.normal(0.4, 0.4, n), 0, None).astype(np.float32)
    if nod_with_speech:
        turn = speech - speech.mean()
    anchors = rng.uniform(-60, 60, (len(FREE), 2)).astype(np.float32) + [256.0, 200.0]
    track[:, FREE, :2] = anchors[None] + turn[:, None, None] * np.array([8.0, 1.0], np.float32)
    track[:, JAW, 0] += 6.0 * turn[:, None]
    track[:, LOWER, 1] += 6.0 * speech[:, None]
    return track, turn, speech


def _still(cal, n):
    return apply(cal, np.zeros((n, rep.N_POINTS, 3), np.float32), np.arange(n),
                 CalibrationOptions(motion_smooth=0, match_range=False))


def test_a_turning_head_keeps_its_own_jaw_line_and_the_lips_stay_the_models(model):
    n = 200
    track, _, _ = turning_track(model, n)
    cal = calibrate(track, model, match_range=False)
    with_pose = _still(cal, n)
    cal.pose = None
    without = _still(cal, n)
    err = lambda out: np.abs(out[:, JAW, :2] - track[:, JAW, :2]).mean()
    # A neutral mouth put on a turned frame leaves its jaw line where a frontal one would be;
    # with the pose part the new jaw sits on the frame's own.
    assert err(without) > 1.0
    assert err(with_pose) < 0.25 * err(without)
    # The lips are the motion model's alone: the frame's own (open) lips do not come back.
    lips = [p for p in rep.MOUTH_POINTS if p not in rep.JAW_POINTS]
    np.testing.assert_allclose(with_pose[:, lips], without[:, lips], atol=1e-4)


def test_speech_that_moves_with_the_head_is_not_taken_for_pose(model):
    n = 200
    track, _, _ = turning_track(model, n, nod_with_speech=True)
    mouth, mats, factor = rep.to_canonical(track, model.reference)
    part = pose_deformation(pose_points(track, mats, factor), mouth, rep.neutral_shape(mouth))
    own = mouth - rep.neutral_shape(mouth)
    # The head moves only when the mouth opens: all of it is the frame's speech, none of it pose.
    assert np.abs(part).max() < 0.05 * np.abs(own[:, JAW_SLOTS]).max()


def test_no_pose_part_for_a_photo_a_still_head_or_untracked_frames(model):
    still = face_track(model, 60)
    mouth, mats, factor = rep.to_canonical(still, model.reference)
    pts = pose_points(still, mats, factor)
    assert not pose_deformation(pts, mouth, rep.neutral_shape(mouth)).any()
    assert not pose_deformation(pts[:1], mouth[:1], mouth[0]).any()  # one frame: a photo
    track, _, _ = turning_track(model, 100)
    mouth, mats, factor = rep.to_canonical(track, model.reference)
    pts = pose_points(track, mats, factor)
    pts[5] = np.nan
    part = pose_deformation(pts, mouth, rep.neutral_shape(mouth))
    assert np.isfinite(part).all() and not part[5].any() and part.any()


def test_the_full_pose_part_never_opens_or_closes_the_mouth(model):
    track, _, _ = turning_track(model, 150, seed=3)
    track[:, LOWER, 0] += 3.0 * np.sin(np.linspace(0, 6 * np.pi, 150))[:, None]  # the lips turn too
    mouth, mats, factor = rep.to_canonical(track, model.reference)
    part = pose_deformation(pose_points(track, mats, factor), mouth,
                            rep.neutral_shape(mouth), jaw_only=False)
    lips = np.setdiff1d(np.arange(rep.N_POINTS), JAW_SLOTS)
    assert np.abs(part[:, lips]).max() > 1e-3
    np.testing.assert_allclose(rep.aperture(part.reshape(len(part), -1)), 0.0, atol=1e-6)


def test_training_targets_lose_the_pose_part_and_keep_their_aperture(model):
    from lipdub.motion import training as tr
    from lipdub.motion.dataset import Clip

    n = 150
    track, turn, _ = turning_track(model, n, seed=2)
    track[:, [1, 4], 0] += 8.0 * turn[:, None]  # the nose tip swings with the turn (it is kept)
    mouth, mats, factor = rep.to_canonical(track, model.reference)
    neutral = rep.neutral_shape(mouth)
    c = Clip("c", "s", "0" * 64, np.zeros((n, 4), np.float32), np.ones(n, np.float32),
             np.zeros(n, np.float32), track, mouth=mouth, matrices=mats, neutral=neutral,
             target=(mouth - neutral).reshape(n, -1), meta={"factor": factor})
    cleaned = tr.pose_cleaned([c])[0]
    jaw = lambda t: t.reshape(n, rep.N_POINTS, 3)[:, JAW_SLOTS, 0].var(0).sum()
    assert jaw(cleaned.target) < 0.2 * jaw(c.target)
    np.testing.assert_allclose(cleaned.aperture, c.aperture, atol=1e-6)
    assert cleaned.target is not c.target
