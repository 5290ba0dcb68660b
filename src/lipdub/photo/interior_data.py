"""Real open-mouth samples for the interior model and its benchmark: speakers, splits, extraction.

Speakers come from each folder's ``SOURCES.tsv`` (``speaker_id``) where it has one, else from the
file name, so every split is by person. ``HELDOUT`` people are never trained on: the held-out
interior benchmark (``benchmarks/photo_interior_eval.py``) measures on them; ``FRESH`` people are
a second held-out fold, looked at only once, after every setting was fixed. Both lists were
written down before any model was trained.

Extraction (cached per clip as ``.npz``): every frame up to ``max_frames`` is tracked (MediaPipe,
video mode, so tracking stays locked); every ``stride``-th frame whose mouth is open gives the
canonical canvas crop at twice the canvas size (``interior.canonical_matrix``), the opening mask,
the lip/skin colours and the aperture.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import cv2
import numpy as np

from lipdub.photo import interior as it

VIDEO_EXT = {".mp4", ".mpg", ".mov", ".avi", ".mkv", ".webm"}
#: Held-out people of the interior benchmark (speaker ids, or file stems where a folder has none).
HELDOUT = ("sadtalker_WDA_AOC_000", "mimictalk_German_20s", "latentsync_demo3_video",
           "fi_0ObEtA6Q8vU", "fi__G3kw9HwCqY", "jim_acosta", "theresa_may", "dolos_wilty_D",
           "hdtf_RD_Radio10", "joygen_vlogger_F", "MEAD_M003", "lrs3_0Fi83BHQsMA")
#: A second, fresh held-out fold: measured once, at the end.
FRESH = ("retalking_face1", "fi__fJcW5234bY", "dolos_wilty_B", "natalie_portman", "MEAD_W015",
         "skyreels_drv2_woman")
#: Clips kept per speaker (the one-speaker GRID corpus would otherwise drown everyone else).
MAX_CLIPS_PER_SPEAKER = 6


def speaker_ids(folder: Path) -> dict[str, str]:
    """File name -> speaker id from ``folder/SOURCES.tsv`` (empty when it has no such column)."""
    tsv = Path(folder) / "SOURCES.tsv"
    if not tsv.exists():
        return {}
    with open(tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["local_file"]: r["speaker_id"] for r in rows if r.get("speaker_id")}


def list_clips(dirs: list[Path]) -> list[tuple[Path, str]]:
    """(clip, speaker) for every video in ``dirs``, at most ``MAX_CLIPS_PER_SPEAKER`` each."""
    out, counts = [], {}
    for d in dirs:
        ids = speaker_ids(d)
        for p in sorted(Path(d).iterdir()):
            if p.suffix.lower() not in VIDEO_EXT:
                continue
            who = ids.get(p.name, p.stem)
            counts[who] = counts.get(who, 0) + 1
            if counts[who] <= MAX_CLIPS_PER_SPEAKER:
                out.append((p, who))
    return out


def extract_clip(path: Path, stride: int, min_aperture: float, max_frames: int) -> dict:
    """Open-mouth samples of one clip: crops (N, 2H, 2W, 3) uint8, masks (N, H, W), colours (N, 6),
    apertures (N,)."""
    from lipdub.face import FaceTracker, mouth_aperture
    from lipdub.video import read_frames

    crops, masks, colours, aps = [], [], [], []
    with FaceTracker(mode="video") as tracker:
        for i, frame in enumerate(read_frames(path, fps=25.0, max_size=720)):
            if i >= max_frames:
                break
            lm = tracker.track(frame)
            if lm is None or i % stride:
                continue
            ap = float(mouth_aperture(lm))
            if not ap > min_aperture:
                continue
            m2 = it.canonical_matrix(lm, scale=2.0)
            crops.append(cv2.warpAffine(frame, m2, (2 * it.CANVAS_W, 2 * it.CANVAS_H),
                                        flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE))
            masks.append(it.opening_mask(lm, it.canonical_matrix(lm)))
            colours.append(it.mouth_colours(frame, lm))
            aps.append(ap)
    n = len(crops)
    return {"crops": np.array(crops, np.uint8).reshape(n, 2 * it.CANVAS_H, 2 * it.CANVAS_W, 3),
            "masks": np.array(masks, np.float32).reshape(n, it.CANVAS_H, it.CANVAS_W),
            "colours": np.array(colours, np.float32).reshape(n, 6),
            "apertures": np.array(aps, np.float32)}


def build_dataset(dirs: list[Path], cache: Path, stride: int, min_aperture: float,
                  max_frames: int, exclude: set[str]) -> list[dict]:
    """Samples of every clip whose speaker is not in ``exclude`` (extracted once, then cached)."""
    from lipdub.avatar_folder import file_sha256

    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for p, who in list_clips(dirs):
        if who in exclude:
            continue
        sha = file_sha256(p)
        npz = cache / f"{p.stem}-{sha[:12]}-s{stride}-f{max_frames}.npz"
        if not npz.exists():
            t = time.time()
            try:
                data = extract_clip(p, stride, min_aperture, max_frames)
            except Exception as exc:  # a clip ffmpeg or the tracker cannot use: skip, say so
                print(f"skip {p.name}: {exc}", flush=True)
                continue
            tmp = npz.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **data)
            tmp.rename(npz)
            print(f"{p.name}: {len(data['crops'])} samples ({time.time() - t:.0f} s)", flush=True)
        data = dict(np.load(npz))
        out.append({"file": p.name, "folder": p.parent.name, "sha256": sha, "person": who,
                    "n": len(data["crops"]), **data})
    return out
