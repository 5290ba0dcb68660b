"""lipdub.face: MediaPipe tracking on the astronaut photo, geometry, and track post-processing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fixtures import astronaut, open_mouth
from lipdub.face import zoom
from lipdub.face import (
    CHIN,
    EYE_CORNERS,
    LIPS_INNER,
    LIPS_OUTER,
    MOUTH_CORNERS,
    N_LANDMARKS,
    NOSE_TIP,
    STABLE_POINTS,
    FaceTracker,
    canonical_align,
    eye_aspect_ratio,
    fill_gaps,
    inter_ocular,
    mouth_aperture,
    mouth_boxes,
    mouth_width,
    smooth_track,
)


@pytest.fixture(scope="module")
def photo_landmarks() -> np.ndarray:
    with FaceTracker(mode="image") as tracker:
        return tracker.track(astronaut())


def _two_heads(left_big: bool) -> np.ndarray:
    """A 520x300 picture with two astronaut heads, one at 70 % size; which one is big varies."""
    head = astronaut()[20:280, 100:340]
    small = cv2.resize(head, (168, 182), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 520, 3), 200, np.uint8)
    if left_big:
        canvas[20:280, 10:250] = head
        canvas[60:242, 300:468] = small
    else:
        canvas[60:242, 20:188] = small
        canvas[20:280, 260:500] = head
    return canvas


# ------------------------------------------------------------------------------------ tracker

def test_tracker_finds_the_astronaut_in_pixels(photo_landmarks):
    lm = photo_landmarks
    assert lm.shape == (N_LANDMARKS, 3) and lm.dtype == np.float32
    np.testing.assert_allclose(lm[MOUTH_CORNERS[0], :2], (202, 139), atol=4)
    np.testing.assert_allclose(lm[MOUTH_CORNERS[1], :2], (245, 141), atol=4)
    # Subject's right eye (33) is on the image's left; irises sit between their eye corners.
    assert lm[33, 0] < lm[263, 0]
    assert lm[33, 0] < lm[468, 0] < lm[133, 0] and lm[362, 0] < lm[473, 0] < lm[263, 0]
    assert 35 < inter_ocular(lm) < 50
    assert 0.2 < eye_aspect_ratio(lm, "left") < 0.45 and 0.2 < eye_aspect_ratio(lm, "right") < 0.45


def test_aperture_grows_when_the_mouth_opens(photo_landmarks):
    with FaceTracker(mode="image") as tracker:
        opened = tracker.track(open_mouth(astronaut(), 12))
    closed_ap, open_ap = mouth_aperture(photo_landmarks), mouth_aperture(opened)
    assert open_ap > closed_ap + 0.15, (closed_ap, open_ap)
    # Opening the jaw hardly changes the mouth width.
    assert abs(mouth_width(opened) - mouth_width(photo_landmarks)) < 4


def test_no_face_gives_none_and_video_mode_tracks_a_sequence():
    with FaceTracker(mode="image") as tracker:
        assert tracker.track(np.zeros((240, 320, 3), np.uint8)) is None
    img = astronaut()
    with FaceTracker(mode="video") as tracker:
        tracked = [tracker.track(open_mouth(img, o, shift=(2.0 * i, 0))) for i, o in enumerate([0, 4, 8, 12])]
    assert all(t is not None for t in tracked)
    # The face slides right by 2 px a frame; the tracked nose follows.
    nose_x = [t[NOSE_TIP, 0] for t in tracked]
    assert np.all(np.diff(nose_x) > 0.5)


def test_face_choice_largest_index_and_identity():
    small_left, big_left = _two_heads(left_big=False), _two_heads(left_big=True)
    with FaceTracker(mode="image") as tracker:
        assert tracker.track(small_left)[NOSE_TIP, 0] > 260  # the larger face, on the right
    with FaceTracker(mode="image", face_index=0) as tracker:
        assert tracker.track(small_left)[NOSE_TIP, 0] < 190  # counted from the left
    with FaceTracker(mode="image", face_index=2) as tracker:
        assert tracker.track(small_left) is None  # there is no third face
    # In a video the first choice sticks, even when the other person becomes the larger one.
    with FaceTracker(mode="video") as tracker:
        first = tracker.track(small_left)
        second = tracker.track(big_left)
    assert first[NOSE_TIP, 0] > 260 and second is not None and second[NOSE_TIP, 0] > 260


def test_small_faces_are_found_in_crops():
    # A 512-pixel astronaut (100-pixel face) in a 1400x1100 frame: too small for the whole-frame
    # detector, found by the crop search, reported in pixels of the whole frame.
    canvas = np.full((1100, 1400, 3), 90, np.uint8)
    canvas[300:812, 800:1312] = astronaut()
    with FaceTracker(mode="image") as tracker:
        lm = tracker.track(canvas)
    assert lm is not None
    np.testing.assert_allclose(lm[MOUTH_CORNERS[0], :2], (1002, 439), atol=4)
    # In a video the face is then followed inside a crop, frame after frame, as it moves.
    with FaceTracker(mode="video") as tracker:
        for i in range(12):
            frame = np.full((1100, 1400, 3), 90, np.uint8)
            frame[300:812, 600 + 5 * i:1112 + 5 * i] = open_mouth(astronaut(), 3 * (i % 4))
            lm = tracker.track(frame)
            assert lm is not None, f"lost at frame {i}"
            np.testing.assert_allclose(lm[MOUTH_CORNERS[1], :2], (845 + 5 * i, 441), atol=5)


def test_crop_search_geometry():
    levels = zoom.search_levels(1080, 1920)
    assert [len(level) for level in levels] == [3, 21, 98]  # crops of 1080, 540 and 270 pixels
    assert levels[0] == [(0, 0, 1080), (540, 0, 1080), (840, 0, 1080)]
    assert zoom.search_levels(512, 512) == [[(x, y, 256) for y in (0, 128, 256) for x in (0, 128, 256)]]
    assert zoom.search_levels(256, 256) == []  # nothing smaller is worth searching
    face = np.zeros((N_LANDMARKS, 3), np.float32)
    face[:, :2] = np.random.default_rng(1).uniform(0, 100, (N_LANDMARKS, 2)) + (1000, 500)
    extent = float(np.ptp(face[:, :2], axis=0).max())
    assert zoom.roi_around(face, 1080, 1920)[2] == int(3 * extent)
    # Following slides the crop by at most 4 % of its side per frame.
    x, y, side = zoom.follow_roi(face, (0, 0, 300), 1080, 1920)
    assert (x, y, side) == (12, 12, 300)
    assert len(zoom.distinct_faces([face, face + 3, face + 400])) == 2


def test_mediapipe_start_up_chatter_is_silenced(capfd):
    with FaceTracker(mode="video") as tracker:
        tracker.track(astronaut())
    err = capfd.readouterr().err
    assert "inference_feedback_manager" not in err and "XNNPACK" not in err, err


def test_index_sets_are_consistent():
    assert len(LIPS_OUTER) == len(set(LIPS_OUTER)) == 20 and len(LIPS_INNER) == 20
    assert MOUTH_CORNERS[0] in LIPS_OUTER and MOUTH_CORNERS[1] in LIPS_OUTER
    assert (13 in LIPS_INNER) and (14 in LIPS_INNER)
    assert not set(STABLE_POINTS) & (set(LIPS_OUTER) | set(LIPS_INNER) | {CHIN})
    assert set(EYE_CORNERS) == {33, 133, 362, 263}


# ----------------------------------------------------------------------------------- geometry

def test_geometry_is_vectorised_and_nan_safe(photo_landmarks):
    track = np.stack([photo_landmarks, photo_landmarks * 2, np.full_like(photo_landmarks, np.nan)])
    iod = inter_ocular(track)
    assert iod.shape == (3,)
    np.testing.assert_allclose(iod[1], 2 * iod[0], rtol=1e-5)
    ap = mouth_aperture(track)
    np.testing.assert_allclose(ap[:2], mouth_aperture(photo_landmarks), rtol=1e-5)  # scale-free
    assert np.isnan(ap[2]) and np.isnan(iod[2])


def _similarity(points: np.ndarray, angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = points.copy()
    out[..., :2] = points[..., :2] @ rot.T + np.asarray(shift)
    out[..., 2] = points[..., 2] * scale
    return out


def test_canonical_align_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 200, size=(N_LANDMARKS, 3)).astype(np.float32)
    moved = _similarity(ref.astype(np.float64), 25.0, 1.7, (40.0, -15.0))
    # Mouth motion must not disturb the fit: move the lips, the alignment keeps that motion.
    moved[list(LIPS_OUTER), 1] += 30.0
    aligned, matrix = canonical_align(moved, ref)
    stable = list(STABLE_POINTS)
    np.testing.assert_allclose(aligned[stable], ref[stable], atol=1e-3)
    lip_shift = aligned[list(LIPS_OUTER), :2] - ref[list(LIPS_OUTER), :2]
    np.testing.assert_allclose(np.linalg.norm(lip_shift, axis=1), 30.0 / 1.7, rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.linalg.det(matrix[:, :2])), 1 / 1.7, rtol=1e-6)
    # A track gives one matrix per frame.
    track = np.stack([_similarity(ref.astype(np.float64), a, 1.0 + a / 100, (a, 2 * a)) for a in (0, 10, -30)])
    aligned_track, matrices = canonical_align(track, ref)
    assert matrices.shape == (3, 2, 3)
    np.testing.assert_allclose(aligned_track, np.broadcast_to(ref, track.shape), atol=1e-3)


# ---------------------------------------------------------------------------- track processing

def _constant_track(values) -> np.ndarray:
    """A (T, 478, 3) track whose every coordinate in frame t equals values[t] (NaN allowed)."""
    return np.broadcast_to(np.asarray(values, np.float32)[:, None, None], (len(values), N_LANDMARKS, 3)).copy()


def test_fill_gaps_interpolates_and_holds_the_ends():
    nan = np.nan
    filled = fill_gaps(_constant_track([nan, 1, nan, nan, 4, nan]))
    np.testing.assert_allclose(filled[:, 0, 0], [1, 1, 2, 3, 4, 4])
    assert np.isfinite(filled).all()
    one_point_missing = _constant_track([0, 2, 4])
    one_point_missing[1, 7, 1] = nan  # a partly-missing frame counts as missing
    np.testing.assert_allclose(fill_gaps(one_point_missing)[1], 2)
    with pytest.raises(ValueError):
        fill_gaps(_constant_track([nan, nan]))


def test_smooth_track_is_centred_and_keeps_polynomials():
    impulse = np.zeros(11, np.float32)
    impulse[5] = 35.0
    out = smooth_track(_constant_track(impulse), 5)[:, 0, 0]
    # Savitzky-Golay (5 points, quadratic) weights are (-3, 12, 17, 12, -3) / 35: centred, no lag.
    np.testing.assert_allclose(out, [0, 0, 0, -3, 12, 17, 12, -3, 0, 0, 0], atol=1e-4)
    t = np.arange(20, dtype=np.float32)
    parabola = _constant_track(0.5 * t ** 2 - 3 * t + 7)
    np.testing.assert_allclose(smooth_track(parabola, 7), parabola, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(smooth_track(impulse[:, None, None] * np.ones((1, 478, 3)), 1)[:, 0, 0], impulse)
    assert smooth_track(_constant_track([1.0, 2.0, 4.0]), 9).shape == (3, N_LANDMARKS, 3)  # short clip
    with pytest.raises(ValueError):
        smooth_track(parabola, 4)


def _face_track(shifts_x, size=1.0) -> np.ndarray:
    """Eyes centred at (100, 100) and (200, 100), nose tip (150, 170), chin (150, 270), moved by x."""
    track = np.zeros((len(shifts_x), N_LANDMARKS, 3), np.float32)
    points = {33: (90, 100), 133: (110, 100), 362: (190, 100), 263: (210, 100),
              NOSE_TIP: (150, 170), CHIN: (150, 270)}
    for index, (x, y) in points.items():
        track[:, index, 0] = x * size + np.asarray(shifts_x)
        track[:, index, 1] = y * size
    return track


def test_mouth_boxes_are_square_stable_and_inside_the_frame():
    boxes = mouth_boxes(_face_track([0, 0, 0]), width=400, height=400, scale=2.0)
    # Side 2 x inter-ocular (100); centre halfway between nose tip and chin, (150, 220).
    np.testing.assert_array_equal(boxes, [[50, 120, 250, 320]] * 3)
    assert boxes.dtype == np.int32
    moving = mouth_boxes(_face_track([0, 10, 20, 30]), 400, 400, scale=2.0, centre_sigma=0)
    np.testing.assert_array_equal(moving[:, 0], [50, 60, 70, 80])
    assert np.all(moving[:, 2] - moving[:, 0] == 200)
    # Near the right edge the box is shifted inside, keeping its size.
    clamped = mouth_boxes(_face_track([150]), 320, 400, scale=2.0)
    np.testing.assert_array_equal(clamped, [[120, 120, 320, 320]])
    # One frame with a squashed face does not change the side (median face scale).
    track = _face_track([0] * 5)
    track[2, [33, 133, 362, 263], 0] = [120, 130, 170, 180]
    assert set((mouth_boxes(track, 400, 400)[:, 2] - mouth_boxes(track, 400, 400)[:, 0]).tolist()) == {200}
    # Larger than the frame: cut to the frame.
    np.testing.assert_array_equal(mouth_boxes(_face_track([0]), 150, 160, scale=2.0)[0, [0, 2]], [0, 150])


def test_cuts_are_found_and_motion_is_not_a_cut():
    from lipdub.face.shots import CutDetector, shot_ids

    base = astronaut()
    other = np.ascontiguousarray(cv2.cvtColor(base, cv2.COLOR_RGB2BGR)[::-1])  # another picture
    frames = [open_mouth(base, 6 * (i % 2), (i, 0)) for i in range(6)] + [other, other]
    detector = CutDetector()
    cuts = [detector.feed(f) for f in frames]
    assert cuts == [False] * 6 + [True, False]
    assert max(detector.scores[1:6]) < 10 < 27 < detector.scores[6]
    np.testing.assert_array_equal(shot_ids(cuts), [0] * 6 + [1, 1])


def test_every_face_in_a_frame_and_a_fresh_start_after_a_cut():
    small = cv2.resize(astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    two = np.concatenate([small, small[:, ::-1]], 1)
    with FaceTracker(mode="video") as tracker:
        faces = tracker.faces_in(two)
        assert len(faces) == 2
        assert sorted(float(f[:, 0].mean()) < 256 for f in faces) == [False, True]
        assert tracker.faces_in(np.zeros_like(two)) == []
        tracker.restart()
        assert len(tracker.faces_in(two)) == 2  # found again straight after a cut


def test_identity_tells_a_different_face_from_the_same_one(photo_landmarks):
    from lipdub.face.people import SAME_PERSON, identity, identity_distance, yaw_degrees

    img = astronaut()
    shifted = np.roll(img, 3, axis=1)
    lm_shifted = photo_landmarks.copy()
    lm_shifted[:, 0] += 3
    darker = np.clip(img.astype(np.float32) * [0.7, 0.55, 0.45], 0, 255).astype(np.uint8)
    same = identity_distance(identity(img, photo_landmarks), identity(shifted, lm_shifted))
    other = identity_distance(identity(img, photo_landmarks), identity(darker, photo_landmarks))
    assert same < SAME_PERSON < other
    assert yaw_degrees(photo_landmarks) < 20
