"""Fixed leave-speakers-out folds for the motion model, decided before any training.

``assign_folds`` splits the speakers of ``dataset.list_sources(roots)`` into ``k`` folds; the
assignment is written once to a JSON file (``benchmarks/results/motion_folds.json``) and every
later step reads it back, so no training run, offset search or benchmark can pick its own split.

Fold roles: folds ``0 .. k-2`` are the *development* folds (cross-validation, ablations, offset
search); fold ``k-1`` is the *fresh* fold, held back until the settings are chosen, so there is
one figure that no choice was tuned on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lipdub.motion.dataset import list_sources

DEFAULT_K = 6


def languages(roots: list[Path]) -> dict[str, str]:
    """File name → language code (``en``, ``de``, ``zh`` or ``unknown``) from SOURCES.tsv notes."""
    out = {}
    for root in roots:
        tsv = Path(root) / "SOURCES.tsv"
        if not tsv.exists():
            continue
        with open(tsv, newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if "language" not in row:
                    continue  # extra/: English corpora (GRID, LRS2/3, LRW, MEAD, VoxCeleb crops)
                lang = (row.get("language") or "").strip().lower()
                code = lang.split()[0] if lang else ""
                if "likely" in lang:
                    code = lang.split("likely")[1].strip(" )")[:2]
                out[row.get("local_file", "")] = code if code in ("en", "de", "zh", "fr") else "unknown"
    return out


def language_of(name: str, langs: dict[str, str]) -> str:
    if "German" in name:
        return "de"
    if name in langs:
        return langs[name]
    # data/ and extra/ clips without a language column: English corpora and demos.
    return "en"


def assign_folds(speakers: list[str], k: int = DEFAULT_K, seed: int = 0) -> dict[str, int]:
    """Speaker → fold: a seeded shuffle dealt round-robin (folds differ by at most one speaker)."""
    order = sorted(set(speakers))
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    return {s: i % k for i, s in enumerate(order)}


def build_fold_file(roots: list[Path], path: Path, k: int = DEFAULT_K, seed: int = 0) -> dict:
    """Assign folds over every video in ``roots`` and write them to ``path`` (refuses to overwrite)."""
    if path.exists():
        raise FileExistsError(f"{path} exists: folds are fixed once; delete it deliberately to redo")
    sources = list_sources(roots)
    langs = languages(roots)
    speaker_fold = assign_folds([s for _, s in sources], k, seed)
    files = {f"{p.parent.name}/{p.name}": {"speaker": s, "fold": speaker_fold[s],
                                            "language": language_of(p.name, langs)}
             for p, s in sources}
    table = {"k": k, "seed": seed, "dev_folds": list(range(k - 1)), "fresh_fold": k - 1,
             "roots": [Path(r).name for r in roots], "speakers": speaker_fold, "files": files}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")  # a half-written fold file must never be read
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
    tmp.replace(path)
    return table


def speaker_share(fold_of: dict[str, int], share: float, seed: int = 0) -> set[str]:
    """The speakers a learning-curve run keeps: ``share`` of each fold's (at least one), drawn by
    a seeded shuffle, so every training set shrinks alike and held-out folds stay whole."""
    if not 0 < share <= 1:
        raise ValueError(f"speaker share must be in (0, 1], got {share}")
    rng = np.random.default_rng(seed)
    kept = set()
    for k in sorted(set(fold_of.values())):
        order = sorted(s for s, f in fold_of.items() if f == k)
        rng.shuffle(order)
        kept.update(order[:max(1, round(share * len(order)))])
    return kept


def load_folds(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def fold_of(table: dict, speaker: str) -> int | None:
    return table["speakers"].get(speaker)
