"""Photo avatars: idle template (blinks, head motion, still background) and the mouth warp."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import astronaut


@pytest.fixture(scope="module")
def photo():
    from lipdub.face import FaceTracker

    image = astronaut()
    with FaceTracker(mode="image") as tracker:
        landmarks = tracker.track(image)
    assert landmarks is not None
    return image, landmarks


@pytest.fixture(scope="module")
def still_tracker():
    from lipdub.face import FaceTracker

    with FaceTracker(mode="image") as tracker:
        yield tracker


def _blinks(closure: np.ndarray) -> int:
    shut = (closure > 0.5).astype(int)
    return int((np.diff(shut) == 1).sum() + shut[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blink_rate_is_natural(seed):
    from lipdub.photo.idle import blink_schedule

    closure = blink_schedule(25 * 120, 25.0, seed)
    per_minute = _blinks(closure) / 2.0
    assert 10 <= per_minute <= 20
    # Each blink lasts ~100-300 ms: count the frames of each closure bump.
    frames = np.flatnonzero(closure > 0)
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    assert all(2 <= len(r) <= 9 for r in runs)
    assert closure[:10].max() == 0 and closure[-10:].max() == 0  # clear of the ping-pong turns


def test_blink_closes_the_eye_for_the_tracker(photo, still_tracker):
    from lipdub.face import eye_aspect_ratio
    from lipdub.photo.idle import make_idle_template

    image, landmarks = photo
    tmpl = make_idle_template(image, landmarks, seconds=6, seed=0, head_motion=0, breathing=0)
    k = int(np.argmax(tmpl.closure))
    assert tmpl.closure[k] >= 0.95
    before = still_tracker.track(image)
    during = still_tracker.track(tmpl.frame(k))
    assert during is not None
    for side in ("left", "right"):
        drop = 1 - eye_aspect_ratio(during, side) / eye_aspect_ratio(before, side)
        assert drop >= 0.6, (side, drop)
    # The stored landmarks say the same (they are the warp's own targets).
    assert eye_aspect_ratio(tmpl.landmarks[k], "left") < 0.4 * eye_aspect_ratio(landmarks, "left")


def test_idle_motion_is_small_smooth_and_background_still(photo):
    from lipdub.face import NOSE_TIP
    from lipdub.photo.idle import make_idle_template

    image, landmarks = photo
    tmpl = make_idle_template(image, landmarks, seconds=4, seed=3)
    nose = tmpl.landmarks[:, NOSE_TIP, :2]
    span = nose.max(0) - nose.min(0)
    assert 0.3 < span.max() < 8.0          # a few pixels of head motion
    step = np.abs(np.diff(nose, 2, axis=0)).max()
    assert step < 0.3                      # smooth: tiny accelerations frame to frame
    # Loop-friendly: near-zero speed at both ends of the ping-pong walk.
    assert np.abs(nose[1] - nose[0]).max() < 0.1 and np.abs(nose[-1] - nose[-2]).max() < 0.1
    # Pixels well away from the person never change: the top corners of the photo.
    for i in (0, tmpl.n_frames // 3, tmpl.n_frames // 2, tmpl.n_frames - 1):
        frame = tmpl.frame(i)
        assert frame.shape == image.shape
        assert np.array_equal(frame[:60, :60], image[:60, :60])
        assert np.array_equal(frame[:60, -60:], image[:60, -60:])


def test_idle_options_turn_motion_off(photo):
    from lipdub.photo.idle import make_idle_template

    image, landmarks = photo
    tmpl = make_idle_template(image, landmarks, seconds=2, blink=False, head_motion=0, breathing=0)
    assert np.allclose(tmpl.landmarks, landmarks[None], atol=1e-4)
    assert np.array_equal(tmpl.frame(5), image)


@pytest.mark.parametrize("aperture", [0.3, 0.45])
def test_mouth_warp_reaches_requested_aperture(photo, still_tracker, aperture):
    from lipdub.face import mouth_aperture
    from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks

    image, landmarks = photo
    target = open_mouth_landmarks(landmarks, aperture)
    wanted = float(mouth_aperture(target))
    assert abs(wanted - aperture) < 0.05
    renderer = PhotoMouthRenderer(landmarks)
    original = image.copy()
    out = renderer.render(image, landmarks, target)
    assert np.array_equal(image, original)  # input untouched
    measured = still_tracker.track(out)
    assert measured is not None
    assert abs(float(mouth_aperture(measured)) - wanted) < 0.08
    # Only the lower face changed.
    assert np.array_equal(out[:100], image[:100])


def test_mouth_chunk_matches_single_frames(photo):
    from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks

    image, landmarks = photo
    renderer = PhotoMouthRenderer(landmarks)
    targets = np.stack([open_mouth_landmarks(landmarks, a) for a in (0.2, 0.35)])
    chunk = renderer.render_chunk([image, image], np.stack([landmarks, landmarks]), targets)
    for out, tgt in zip(chunk, targets):
        assert np.abs(out.astype(int) - renderer.render(image, landmarks, tgt)).max() <= 1


@pytest.mark.parametrize("kind", ["drawn", "procedural", "model"])
def test_interior_runs(kind):
    from lipdub.photo import interior as it

    if kind == "model":
        if not it.ONNX_PATH.exists():
            pytest.skip("no shipped mouth interior model")
        assert it.ONNX_PATH.stat().st_size <= 20 * 1024 ** 2
    model = it.load_interior(kind)
    assert model.kind == kind
    if kind in ("model", "drawn"):
        assert "train_command" in model.manifest and "licence" in model.manifest
        assert all(len(d["sha256"]) == 64 for d in model.manifest["data"])
    masks = np.zeros((2, it.CANVAS_H, it.CANVAS_W), np.float32)
    masks[:, 14:30, 12:52] = 1
    colours = np.tile(np.array([[0.7, 0.4, 0.4, 0.8, 0.6, 0.5]], np.float32), (2, 1))
    out = model(masks, colours)
    assert out.shape == (2, it.CANVAS_H, it.CANVAS_W, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if kind == "procedural":  # a cavity darker than the lips around it
        assert out[0, 20:28, 20:44].mean() < colours[0, :3].mean()


def _opening_lab(frame, landmarks):
    """CIE Lab pixels inside the inner-lip opening (eroded by a pixel)."""
    import cv2

    from lipdub.face.mesh import LIPS_INNER

    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[list(LIPS_INNER), :2]).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    lab = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return lab[mask > 0]


@pytest.mark.parametrize("own_teeth", [False, True])
def test_open_mouth_shows_teeth_and_is_not_flat(photo, own_teeth):
    """The default interior of an opened mouth: teeth-like pixels (bright, low chroma) under the
    upper lip, a darker throat, real variation; with or without the photo's own teeth."""
    from lipdub.photo import interior as it
    from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks

    image, landmarks = photo
    renderer = PhotoMouthRenderer(landmarks, it.load_interior(), own_teeth=own_teeth)
    assert renderer.interior.kind == "drawn"
    for aperture in (0.3, 0.5):
        target = open_mouth_landmarks(landmarks, aperture)
        lab = _opening_lab(renderer.render(image, landmarks, target), target)
        assert len(lab) > 200
        chroma = np.hypot(lab[:, 1], lab[:, 2])
        teeth = (lab[:, 0] > 50) & (chroma < 25)
        assert teeth.mean() > 0.08, (aperture, teeth.mean())
        assert lab[:, 0].std() > 12                      # not a flat painted hole
        assert np.percentile(lab[:, 0], 10) < 35         # a dark throat behind the teeth
        # Teeth sit at the top of the opening (the upper jaw): pixels come row by row, so the
        # first quarter is the top of the opening and the middle third its centre.
        top, bottom = lab[: len(lab) // 4, 0].mean(), lab[len(lab) // 3: 2 * len(lab) // 3, 0].mean()
        assert top > bottom, (aperture, top, bottom)


def test_mouth_changes_nothing_outside_the_face(photo):
    """Outside the face and the band where the jaw's motion fades out (the innermost warp ring,
    the face oval scaled 1.3x) every pixel stays bit-identical, and so does the face from the
    lower lids up (eyes, brows), at every aperture, with the default interior."""
    import cv2

    from lipdub.face.mesh import LEFT_EYE, RIGHT_EYE
    from lipdub.photo.meshwarp import DEFAULT_RINGS, ring_points
    from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks

    image, landmarks = photo
    ring = ring_points(landmarks, DEFAULT_RINGS[:1])
    face = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(face, [np.round(ring).astype(np.int32)], 1)
    face = cv2.dilate(face, np.ones((5, 5), np.uint8)) > 0   # rasterisation of the ring's edge
    face[: int(landmarks[list(LEFT_EYE) + list(RIGHT_EYE), 1].max()) + 1] = False
    renderer = PhotoMouthRenderer(landmarks)
    for aperture in (0.2, 0.35, 0.55):
        out = renderer.render(image, landmarks, open_mouth_landmarks(landmarks, aperture))
        changed = (out != image).any(axis=2)
        assert changed.sum() > 500
        assert not changed[~face].any(), (aperture, int(changed[~face].sum()))


def test_prepare_photo_writes_a_photo_avatar(face_png, tmp_path):
    from lipdub.avatar import Avatar
    from lipdub.photo import PhotoOptions, prepare_photo

    avatar = prepare_photo(face_png, tmp_path / "av", PhotoOptions(seconds=2.0))
    assert avatar.manifest["kind"] == "photo"
    assert avatar.n_frames == 50 and avatar.landmarks.shape == (50, 478, 3)
    again = Avatar.load(tmp_path / "av")
    assert again.boxes.shape == (50, 4)
    assert again.frame(10).shape == (512, 512, 3)
    # Stored landmarks are the exact warp targets: they move (head motion), unsmoothed.
    assert np.ptp(again.landmarks[:, 1, 0]) > 0.1
    np.testing.assert_array_equal(again.landmarks, again.raw_landmarks)


def test_photo_with_shut_eyes_is_not_blinked(photo, still_tracker):
    """A photo whose eyes are already shut keeps them as they are: no squeeze, no painted lid
    (which only rings a closed eye with inpainted skin)."""
    from lipdub.photo.idle import blink_gain, make_idle_template

    image, landmarks = photo
    assert blink_gain(landmarks) == 1.0
    open_tmpl = make_idle_template(image, landmarks, seconds=6, seed=0, head_motion=0, breathing=0)
    shut = open_tmpl.frame(int(np.argmax(open_tmpl.closure)))   # the astronaut mid-blink, as a photo
    shut_lm = still_tracker.track(shut)
    assert shut_lm is not None and blink_gain(shut_lm) == 0.0
    tmpl = make_idle_template(shut, shut_lm, seconds=6, seed=0, head_motion=0, breathing=0)
    assert tmpl.closure.max() == 0
    for i in range(0, tmpl.n_frames, 25):
        assert np.array_equal(tmpl.frame(i), shut)
