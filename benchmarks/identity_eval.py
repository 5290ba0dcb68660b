"""How well the face-identity descriptor (``lipdub.face.people``) tells people apart (JSON out).

For each development clip (``../shared/data``, ``extra``, ``extra2``; speakers from the motion
model's data manifest), two 1 s windows (the first and the last second) are tracked and each
gives a track descriptor. Pairs of tracks are "same person" (same speaker: the two windows of a
clip, or two clips of one speaker) or "different". Speakers are split in two halves by a fixed
hash: a threshold is chosen on the first half (minimising the rate of one person called two
plus 5x the rate of two people called one) and the error rates are reported on the second, next
to those of the shipped ``SAME_PERSON``.

    python benchmarks/identity_eval.py [--max-clips 60] [--out benchmarks/results/identity_eval.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from lipdub.face import FaceTracker
from lipdub.face.people import SAME_PERSON, identity, identity_distance
from lipdub.video import frame_count, read_frames

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def window_descriptors(path: Path, seconds: float = 1.0, fps: float = 25.0) -> list[np.ndarray]:
    """Median descriptor of the largest face over the first and over the last ``seconds``."""
    n = frame_count(path, fps)
    k = int(seconds * fps)
    if n < 3 * k:
        return []
    parts: dict[int, list[np.ndarray]] = {0: [], 1: []}
    with FaceTracker(mode="image") as tracker:
        for i, frame in enumerate(read_frames(path, fps=fps, max_size=720)):
            if (i < k or i >= n - k) and i % 2 == 0:
                lm = tracker.track(frame)
                if lm is not None:
                    parts[int(i >= n - k)].append(identity(frame, lm))
    return [np.median(np.stack(v), 0) for v in parts.values() if len(v) >= 3]


def half(speaker: str) -> int:
    return int(hashlib.sha256(speaker.encode()).hexdigest(), 16) % 2


def rates(pairs, threshold: float) -> dict:
    same = np.array([d for d, s in pairs if s])
    diff = np.array([d for d, s in pairs if not s])
    return {"threshold": round(threshold, 3), "same_pairs": int(len(same)), "different_pairs": int(len(diff)),
            "same_called_different": round(float((same > threshold).mean()), 4) if len(same) else None,
            "different_called_same": round(float((diff <= threshold).mean()), 4) if len(diff) else None,
            "same_median": round(float(np.median(same)), 3) if len(same) else None,
            "different_median": round(float(np.median(diff)), 3) if len(diff) else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-clips", type=int, default=60)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "identity_eval.json")
    args = ap.parse_args(argv)
    manifest = json.loads((ROOT / "src" / "lipdub" / "models" / "motion_manifest.json").read_text())
    clips = [(SHARED / c["file"], c["speaker"]) for c in manifest["data"] if (SHARED / c["file"]).exists()]
    if not clips:
        print(json.dumps({"skipped": f"no development clips under {SHARED}"}))
        return 0
    # At most two clips per speaker, so the sample spans many people.
    per_speaker: dict[str, list[Path]] = {}
    for path, speaker in sorted(clips):
        if len(per_speaker.setdefault(speaker, [])) < 2:
            per_speaker[speaker].append(path)
    chosen_clips = [(path, s) for s, paths in sorted(per_speaker.items()) for path in paths]
    tracks = []  # (speaker, descriptor)
    for path, speaker in chosen_clips[:args.max_clips]:
        for desc in window_descriptors(path):
            tracks.append((speaker, desc))
        print(f"{path.name}: {len(tracks)} tracks", file=sys.stderr)
    pairs = {0: [], 1: []}
    for i in range(len(tracks)):
        for j in range(i + 1, len(tracks)):
            (si, di), (sj, dj) = tracks[i], tracks[j]
            if half(si) == half(sj):
                pairs[half(si)].append((identity_distance(di, dj), si == sj))
    grid = np.linspace(0.2, 4.0, 77)
    # Calling two people one is the harmful error (one person's mouth on another): it costs 5x
    # calling one person two (their later shots then pass through undubbed). Rates, not counts,
    # so the many more different pairs do not swamp the same ones.
    same0 = np.array([d for d, s in pairs[0] if s])
    diff0 = np.array([d for d, s in pairs[0] if not s])
    errors = [(same0 > t).mean() + 5 * (diff0 <= t).mean() for t in grid]
    chosen = float(grid[int(np.argmin(errors))])
    report = {"speakers": len({s for s, _ in tracks}), "tracks": len(tracks),
              "chosen_on_first_half": rates(pairs[0], chosen),
              "second_half_at_chosen": rates(pairs[1], chosen),
              "second_half_at_shipped": rates(pairs[1], SAME_PERSON),
              "all_at_shipped": rates(pairs[0] + pairs[1], SAME_PERSON)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
