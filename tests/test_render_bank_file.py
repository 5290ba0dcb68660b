"""The mouth bank file: memory-mapped on load, the same arrays as ``np.load``; other files fall back."""

from __future__ import annotations

import numpy as np

from lipdub.render.reference import BANK_FILE, ReferenceBank, mapped_npz


def _bank(full: bool) -> ReferenceBank:
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    points = rng.random((5, 64, 2)).astype(np.float32) * 16
    big = rng.integers(0, 256, (5, 40, 40, 3), dtype=np.uint8) if full else None
    return ReferenceBank(crops, points, np.arange(5, dtype=np.int32) * 3, big)


def test_saved_bank_loads_mapped_and_equal(tmp_path):
    bank = _bank(full=True)
    bank.save(tmp_path)
    mapped = mapped_npz(tmp_path / BANK_FILE)
    assert mapped is not None and set(mapped) == {"crops", "points", "frames", "full"}
    loaded = ReferenceBank.load(tmp_path)
    for name in ("crops", "points", "frames", "full"):
        assert np.array_equal(getattr(loaded, name), getattr(bank, name)), name
    assert not loaded.full.flags.writeable  # a read-only map, not a copy
    assert np.array_equal(loaded.features, bank.features)
    # re-saving a loaded (mapped) bank over its own file works
    loaded.save(tmp_path)
    assert np.array_equal(ReferenceBank.load(tmp_path).full, bank.full)


def test_bank_without_full_crops(tmp_path):
    _bank(full=False).save(tmp_path)
    assert ReferenceBank.load(tmp_path).full is None


def test_compressed_or_odd_files_fall_back(tmp_path):
    bank = _bank(full=True)
    path = tmp_path / BANK_FILE
    np.savez_compressed(path, crops=bank.crops, points=bank.points, frames=bank.frames, full=bank.full)
    assert mapped_npz(path) is None  # deflated members cannot be mapped
    loaded = ReferenceBank.load(tmp_path)  # read whole instead
    assert np.array_equal(loaded.full, bank.full) and loaded.full.flags.writeable
    fortran = tmp_path / "f.npz"
    np.savez(fortran, a=np.asfortranarray(np.arange(12.0).reshape(3, 4)), e=np.zeros((0, 3)))
    out = mapped_npz(fortran)
    assert np.array_equal(out["a"], np.arange(12.0).reshape(3, 4)) and out["e"].shape == (0, 3)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert mapped_npz(tmp_path / "bad.npz") is None
