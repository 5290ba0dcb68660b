"""Phone tracks (lipdub.motion.phones) and their place in the training inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lipdub.motion import dataset as ds
from lipdub.motion import phones as ph


def test_phone_track_splits_a_frame_at_a_boundary_and_sums_to_one():
    # Frame 2 spans 60-100 ms at 25 fps (centred on 80 ms): the B/AA boundary at 90 ms splits it 3:1.
    track = ph.phone_track([("SIL", 0.0, 0.05), ("B", 0.05, 0.09), ("AA", 0.09, 0.3)], 6)
    assert track.shape == (6, len(ph.PHONES))
    np.testing.assert_allclose(track.sum(1), 1.0, atol=1e-6)
    col = {p: ph.PHONES.index(p) for p in ("B", "AA", "SIL")}
    assert track[2, col["B"]] == pytest.approx(0.75)
    assert track[2, col["AA"]] == pytest.approx(0.25)
    assert track[4, col["AA"]] == pytest.approx(1.0)


def test_frames_past_the_decoded_audio_are_silence_and_fillers_share_one_slot():
    track = ph.phone_track([("+SPN+", 0.0, 0.04), ("M", 0.04, 0.12)], 5)
    assert track[0, len(ph.PHONES) - 1] > 0.4          # a filler: the noise slot, not a phone
    assert track[4, ph.PHONES.index("SIL")] == pytest.approx(1.0)   # 140-180 ms: nothing decoded


def test_tracks_go_before_the_voice_activity_column_of_the_clip_and_each_view(tmp_path, monkeypatch):
    n = 10
    x = np.zeros((n, 5), np.float32)
    x[:, -1] = 7.0   # voice activity: the column the feature code reads last
    clip = ds.Clip("c", "s", "ab" * 32, x, np.ones(n), np.zeros(n), np.empty((0, 478, 3)),
                   meta={"path": str(tmp_path / "c.mp4")}, views=[x.copy(), x.copy()])
    heard = []
    monkeypatch.setattr("lipdub.audio.load_audio", lambda path: np.zeros(16000, np.float32))
    monkeypatch.setattr("lipdub.motion.augment.augmented_audio", lambda audio, seed: audio + seed)
    monkeypatch.setattr(ph, "phone_segments",
                        lambda audio: heard.append(float(audio[0])) or [("B", 0.0, 1.0)])
    ds.add_phone_tracks([clip], tmp_path)
    width = 5 + len(ph.PHONES)
    assert clip.x.shape == (n, width) and all(v.shape == (n, width) for v in clip.views)
    assert (clip.x[:, -1] == 7.0).all() and (clip.views[1][:, -1] == 7.0).all()
    assert clip.x[1:, 4 + ph.PHONES.index("B")].min() == 1.0   # frame 0 starts 20 ms before the audio
    seed = int(clip.sha256[:8], 16)
    assert heard == [0.0, float(seed), float(seed + 1)]   # each view decoded from its own audio
    assert len(list(tmp_path.glob("*.phones*.npz"))) == 1


def test_the_decoder_hears_phones_in_speech(speech_wav):
    pytest.importorskip("pocketsphinx", reason="the --phones ablation's extra (pip install -e '.[phones]')")
    from lipdub.audio import load_audio

    audio = load_audio(speech_wav)
    n = int(len(audio) / ph.SAMPLE_RATE * 25)
    track = ph.phone_track(ph.phone_segments(audio), n)
    speech = 1.0 - track[:, ph.PHONES.index("SIL")] - track[:, -1]
    assert speech.mean() > 0.5                     # espeak speaks almost throughout
    assert len(set(track.argmax(1))) >= 10         # many different phones, not one label


def test_without_the_extra_the_decoder_asks_for_it_in_one_line(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pocketsphinx", None)   # import fails
    monkeypatch.setattr(ph, "_DECODER", [])
    with pytest.raises(SystemExit, match=r"pip install -e \".\[phones\]\""):
        ph.phone_segments(np.zeros(1600, np.float32))
