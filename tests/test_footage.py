"""lipdub.footage + lipdub.face.shots/people: edited footage (cuts, a cutaway without a face, two
people, a face that leaves and comes back, a turned head) is prepared and dubbed without ever
drawing a mouth where the dubbed person's face is not."""

from __future__ import annotations

import numpy as np
import pytest

from dub_fixtures import write_wav
from footage_fixtures import GONE, SHOTS, edited_frames
from fixtures import write_video
from lipdub.avatar import PrepareOptions, prepare

STARTS = np.cumsum([0] + [count for _, count, _ in SHOTS])  # first frame of each shot
A_GONE = (STARTS[4] + GONE[0], STARTS[4] + GONE[1])


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    frames, truth = edited_frames()
    folder = tmp_path_factory.mktemp("edited")
    clip = write_video(folder / "edited.mp4", frames, fps=25)
    return clip, truth, prepare(clip, folder / "avatar")


def _centre_x(lm) -> float:
    return float(lm[:, 0].mean())


def test_shots_are_found_at_the_cuts(edited):
    _, truth, av = edited
    assert av.manifest["shots"] == len(SHOTS)
    np.testing.assert_array_equal(av.shots, [t["shot"] for t in truth])


def test_only_the_dubbed_persons_usable_frames_are_dubbed(edited):
    _, truth, av = edited
    people = av.people
    a = people["dubbed_person"]
    seen = [set(s["people"]) for s in people["shots"]]
    # A (largest face) in shots 0, 3, 4; B, another person, in shots 2 and 3; nobody in the cutaway.
    assert seen[0] == {a} and seen[1] == set() and a not in seen[2] and seen[3] == {a} | seen[2]
    assert seen[4] == {a} and av.manifest["people"] == 2
    w = av.dub_weight
    for i, t in enumerate(truth):
        if t["A"] is None:
            assert w[i] == 0 and not av.face_found[i], i
        else:
            assert w[i] > 0 and av.face_found[i], i
            x0, _, x1, _ = t["A"]
            assert x0 < _centre_x(av.landmarks[i]) < x1, i  # A's face, never B's
    # A fades out before leaving and back in after returning (same shot) ...
    before = w[A_GONE[0] - 4:A_GONE[0]]
    after = w[A_GONE[1]:A_GONE[1] + 4]
    np.testing.assert_allclose(before, [1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(after, [0.25, 0.5, 0.75, 1.0])
    # ... but at a cut the switch is immediate.
    assert w[STARTS[1] - 1] == 1.0 and w[STARTS[3]] == 1.0


def test_landmarks_are_never_interpolated_across_a_cut_or_a_long_gap(edited):
    _, _, av = edited
    lo, hi = A_GONE
    for i in range(lo, hi):
        held = [av.raw_landmarks[lo - 1], av.raw_landmarks[hi]]
        assert any(np.array_equal(av.raw_landmarks[i], h) for h in held), i
    # The cutaway holds a neighbour's landmarks too (never a blend of two shots).
    for i in range(STARTS[1], STARTS[2]):
        held = [av.raw_landmarks[STARTS[1] - 1], av.raw_landmarks[STARTS[3]]]
        assert any(np.array_equal(av.raw_landmarks[i], h) for h in held), i


def test_the_mouth_bank_holds_only_the_dubbed_person(edited):
    from lipdub.render.reference import ReferenceBank

    _, truth, av = edited
    bank = ReferenceBank.load(av.path)
    assert len(bank.frames) > 20 and (av.dub_weight[bank.frames] == 1).all()
    assert all(truth[f]["A"] is not None for f in bank.frames)


def test_dubbing_edited_footage_passes_untouched_frames_through(edited, speech_wav, tmp_path):
    from lipdub.audio import load_audio
    from lipdub.pipeline import GenerateOptions, frames

    _, truth, av = edited
    n = av.n_frames
    speech = load_audio(speech_wav)
    wav = np.zeros(int(n / 25 * 16000), np.float32)
    wav[:min(len(speech), len(wav))] = speech[:len(wav)]
    audio = write_wav(tmp_path / "same_length.wav", np.roll(wav, 8000))
    out = list(frames(av, audio, GenerateOptions()))
    assert len(out) == n  # in place: the video's own timeline, frame for frame
    changed_a = 0
    for i, (frame, t) in enumerate(zip(out, truth)):
        src = av.frame(i)
        if av.dub_weight[i] == 0:
            np.testing.assert_array_equal(frame, src, err_msg=f"frame {i} should pass through")
            continue
        diff = np.abs(frame.astype(int) - src).sum(-1) > 0
        ys, xs = np.nonzero(diff)
        if len(xs):
            x0, y0, x1, y1 = t["A"]
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1, i
            changed_a += 1
        if t["B"] is not None:  # the other person's face is never touched
            x0, y0, x1, y1 = t["B"]
            assert not diff[y0:y1, x0:x1].any(), i
    assert changed_a > 20  # and the dubbed person's mouth really was redrawn


def test_choosing_the_other_person(edited, tmp_path):
    from lipdub.pipeline import GenerateOptions, ensure_avatar

    clip, truth, _ = edited
    by_index = prepare(clip, tmp_path / "b", PrepareOptions(face_index=1, features=False, bank=False))
    # The one-step path (`lipdub generate --avatar raw.mp4 --face 0.8,0.5`), cached per choice.
    by_point = ensure_avatar(clip, GenerateOptions(face_point=(0.8, 0.5), cache_dir=str(tmp_path / "c")))
    assert by_point.path.name.endswith("-at0.800,0.500")
    for av in (by_index, by_point):
        for i, t in enumerate(truth):
            assert (av.dub_weight[i] > 0) == (t["B"] is not None), i
            if t["B"] is not None:
                assert t["B"][0] < _centre_x(av.landmarks[i]) < t["B"][2], i


def _turned(lm: np.ndarray, degrees: float) -> np.ndarray:
    """Landmarks rotated about the vertical axis through their centre."""
    c = lm.mean(0)
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], np.float32)
    return ((lm - c) @ rot.T + c).astype(np.float32)


def test_a_turned_head_is_not_dubbed(edited):
    from lipdub.face.people import Track, dubbed_track, yaw_degrees

    _, _, av = edited
    base = av.raw_landmarks[5]
    assert yaw_degrees(base) < 15
    angles = [0.0] * 10 + [60.0] * 6 + [0.0] * 10
    track = Track(0, list(range(26)), [_turned(base, a) for a in angles], [np.zeros(11)] * 26, person=0)
    dub = dubbed_track([track], 0, np.zeros(26, np.int32), av.width, av.height, fade=2)
    assert not dub.usable[10:16].any() and dub.usable[:10].all() and dub.usable[16:].all()
    np.testing.assert_allclose(dub.weight[6:19], [1, 1, 2 / 3, 1 / 3, 0, 0, 0, 0, 0, 0, 1 / 3, 2 / 3, 1],
                               atol=1e-6)


def test_tracks_never_bridge_a_cut_or_a_long_gap():
    from lipdub.face.people import link_tracks

    face = np.zeros((478, 3), np.float32)
    face[:, :2] = np.random.default_rng(0).uniform(100, 200, (478, 2))
    faces = [[face]] * 5 + [[face]] * 5 + [[]] * 6 + [[face]] * 3 + [[]] * 2 + [[face]] * 3
    shots = np.array([0] * 5 + [1] * 19)
    descs = [[np.zeros(11)] * len(f) for f in faces]
    tracks = link_tracks(faces, descs, shots, max_gap=5)
    # A new track at the cut (5), after the 6-frame gap (16), but the 2-frame gap is bridged.
    assert [t.span for t in tracks] == [(0, 4), (5, 9), (16, 23)]


def test_a_video_without_any_usable_face_fails_clearly(tmp_path):
    from lipdub.errors import NoFaceError

    frames, truth = edited_frames()
    empty = [f for f, t in zip(frames, truth) if t["A"] is None and t["B"] is None]
    clip = write_video(tmp_path / "cutaway.mp4", empty, fps=25)
    with pytest.raises(NoFaceError, match="no face found"):
        prepare(clip, tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_streaming_never_draws_where_there_is_no_face(edited, speech_wav):
    from lipdub.audio import load_audio
    from lipdub.stream import paced_chunks, stream

    _, _, av = edited
    wav = load_audio(speech_wav)[: int(av.n_frames / 25 * 16000)]
    seen = 0
    for f in stream(av, paced_chunks(wav, 0.2)):
        if av.dub_weight[f.template_index] == 0:
            np.testing.assert_array_equal(f.image, av.frame(f.template_index))
            seen += 1
    assert seen > 10


def test_a_face_sliding_out_of_the_picture_is_not_dubbed_while_its_mouth_is_outside(edited):
    from lipdub.face.people import Track, dubbed_track

    _, _, av = edited
    base = av.raw_landmarks[5]
    lowest = float(base[:, 1].max())
    # The face slides down until its chin and mouth leave the picture, then comes back.
    shifts = [0, 0, 0, 0, 0, 60, 120, 120, 60, 0, 0, 0, 0, 0]
    drop = av.height - lowest + 1  # this much further and the chin is out
    faces = [base + np.float32([0, drop * (s / 120) * 1.5 if s else 0, 0]) for s in shifts]
    track = Track(0, list(range(len(faces))), faces, [np.zeros(11)] * len(faces), person=0)
    dub = dubbed_track([track], 0, np.zeros(len(faces), np.int32), av.width, av.height, fade=1)
    outside = np.array([float(f[152, 1]) >= av.height for f in faces])  # 152: the chin
    assert outside.any() and (dub.weight[outside] == 0).all() and not dub.usable[outside].any()
    assert dub.weight[0] == 1 and dub.weight[-1] == 1


def test_a_face_coming_back_where_it_left_is_the_same_person():
    from lipdub.face.people import SAME_PERSON, Track, group_people

    face = np.zeros((478, 3), np.float32)
    face[:, :2] = np.random.default_rng(0).uniform(100, 200, (478, 2))
    elsewhere = face + np.float32([300, 0, 0])
    d = np.zeros(11, np.float32)
    near = d + 1.5 * SAME_PERSON  # descriptor distance between 1x and 2x the threshold

    def track(shot, frames, lm, desc):
        return Track(shot, list(frames), [lm] * len(frames), [desc] * len(frames))

    # Same shot, same place: joined. Same place but another shot, or elsewhere: kept apart.
    for later, joined in ((track(0, range(20, 30), face, near), True),
                          (track(1, range(20, 30), face, near), False),
                          (track(0, range(20, 30), elsewhere, near), False),
                          (track(0, range(20, 30), face, d + 3 * SAME_PERSON), False)):
        tracks = [track(0, range(10), face, d), later]
        assert (group_people(tracks) == 1) == joined
