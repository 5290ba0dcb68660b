"""The training command's run files: runs over disjoint folds merge into one (no training here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lipdub.motion import train


def fake_run(runs, name: str, folds: list[int], config=None) -> None:
    d = runs / name
    d.mkdir(parents=True)
    np.savez(d / "oof.npz", **{f"clip{k}.mp4": np.full((5, 3), k, np.float32) for k in folds})
    np.savez(d / "oof_shuffled.npz", **{f"clip{k}.mp4": np.zeros((5, 3), np.float32) for k in folds})
    torch.save({k: [{"w": torch.full((2,), float(k))}] for k in folds}, d / "fold_nets.pt")
    meta = {"config": config or {"steps": 10}, "test_folds": folds, "train_folds": None, "offsets": None,
            "members": 1, "front_end": {"features_version": 3}, "command": f"run {name}"}
    (d / "meta.json").write_text(json.dumps(meta))


def test_runs_over_disjoint_folds_merge_into_one(tmp_path):
    fake_run(tmp_path, "a", [0, 1])
    fake_run(tmp_path, "b", [2])
    train.merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    out = tmp_path / "ab"
    with np.load(out / "oof.npz") as z:
        assert sorted(z) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
        assert z["clip2.mp4"][0, 0] == 2
    nets = torch.load(out / "fold_nets.pt")
    assert sorted(nets) == [0, 1, 2] and nets[1][0]["w"][0] == 1
    meta = json.loads((out / "meta.json").read_text())
    assert meta["test_folds"] == [0, 1, 2] and meta["merged_from"] == ["a", "b"]
    assert meta["front_end"] == {"features_version": 3}   # the runs' own, not this process's


def test_runs_of_other_settings_or_shared_folds_do_not_merge(tmp_path):
    fake_run(tmp_path, "a", [0])
    fake_run(tmp_path, "b", [1], config={"steps": 20})
    fake_run(tmp_path, "c", [0])
    with pytest.raises(SystemExit, match="other settings"):
        train.merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    with pytest.raises(SystemExit, match="share test folds"):
        train.merge_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "ac")
    assert not (tmp_path / "ab").exists() and not (tmp_path / "ac").exists()


@pytest.mark.parametrize("flag", [["--phones"], ["--input-norm", "utterance"],
                                  ["--speaker-share", "0.5"]])
def test_training_only_options_are_refused_for_shipping_before_any_data_is_read(flag, tmp_path):
    # The refusal comes first: --data points at a folder that does not exist.
    with pytest.raises(SystemExit, match="cross-validation runs"):
        train.main(["--members", "3", "--data", str(tmp_path / "none"), *flag])


def test_fold_nets_load_with_the_input_width_they_were_trained_on(tmp_path):
    from lipdub.motion import training as tr
    from lipdub.motion.modules import MotionNet

    cfg = tr.TrainConfig(width=8, dilations=(1,))
    net = MotionNet(7, torch.zeros(4, 3), cfg.width, cfg.dilations)   # 7 inputs: not INPUT_DIM
    (tmp_path / "r").mkdir()
    torch.save({0: [net.state_dict()]}, tmp_path / "r" / "fold_nets.pt")
    loaded = train.load_fold_nets(tmp_path / "r", cfg)[0][0]
    assert loaded(torch.zeros(1, 20, 7)).shape == (1, 20 - 2 * net.receptive_field, 3)


def test_a_speaker_share_outside_0_to_1_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--speaker-share", "1.5", "--members", "0", "--data", str(tmp_path / "none")])
    assert e.value.code == 2 and "--speaker-share must be in (0, 1]" in capsys.readouterr().err
