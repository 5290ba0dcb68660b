"""Speaker folds: fixed once, by speaker; learning-curve subsets shrink every fold alike."""

from __future__ import annotations

import pytest

from lipdub.motion import folds as fl


def test_folds_are_by_speaker_seeded_and_even():
    speakers = [f"s{i}" for i in range(23)] * 3          # several clips per speaker
    a, b = fl.assign_folds(speakers, k=5, seed=0), fl.assign_folds(speakers, k=5, seed=0)
    assert a == b and sorted(a) == sorted(set(speakers))
    sizes = [sum(f == k for f in a.values()) for k in range(5)]
    assert max(sizes) - min(sizes) <= 1
    assert fl.assign_folds(speakers, k=5, seed=1) != a


def test_fold_file_is_written_once(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    path = tmp_path / "folds.json"
    path.write_text("{}")
    with pytest.raises(FileExistsError, match="fixed once"):
        fl.build_fold_file([root], path)


def test_a_speaker_share_keeps_that_share_of_every_fold():
    fold_of = {f"s{i}": i % 4 for i in range(40)}             # 10 speakers per fold
    kept = fl.speaker_share(fold_of, 0.3, seed=0)
    assert all(sum(fold_of[s] == k for s in kept) == 3 for k in range(4))
    assert kept == fl.speaker_share(fold_of, 0.3, seed=0)
    assert kept != fl.speaker_share(fold_of, 0.3, seed=1)
    assert fl.speaker_share(fold_of, 1.0) == set(fold_of)
    assert len(fl.speaker_share({"a": 0, "b": 1}, 0.01)) == 2   # never an empty fold
    with pytest.raises(ValueError, match="speaker share"):
        fl.speaker_share(fold_of, 0)
