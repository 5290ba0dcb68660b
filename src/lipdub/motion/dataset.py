"""Dataset builder: every talking clip in some folders → cached audio features + canonical mouth track.

Per clip, two caches under ``cache_dir`` keyed by the file's sha256 (so renamed or edited files are
never confused): ``<sha>.track.npz`` (MediaPipe landmarks of the points we need, NaN where no face,
the slow part) and ``<sha>.feat<FEATURES_VERSION>.npz`` (prepared model input, voice activity,
loudness envelope).
Canonicalisation and neutral estimation run at load time, from the shared reference face, so
changing the representation never requires re-tracking.

Speakers: ``extra/SOURCES.tsv`` gives ``speaker_id``; any other clip is its own speaker (the
``data/`` clips are one person each). Audio-only files are skipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipdub.audio.features import FEATURES_VERSION
from lipdub.avatar import file_sha256
from lipdub.face import STABLE_POINTS
from lipdub.motion import representation as rep
from lipdub.progress import Progress

VIDEO_EXTS = {".mp4", ".mpg", ".mpeg", ".mov", ".mkv", ".avi", ".webm"}
FPS = 25.0
#: Landmarks kept in the track cache: the mouth plus what alignment needs.
KEEP = tuple(sorted(set(rep.MOUTH_POINTS) | set(STABLE_POINTS)))
#: Clips where the face is found in fewer frames than this are left out.
MIN_TRACKED = 0.8


@dataclass
class Clip:
    name: str
    speaker: str
    sha256: str
    x: np.ndarray          # (N, INPUT_DIM) prepared features
    vad: np.ndarray        # (N,)
    env: np.ndarray        # (N,) loudness (dB)
    raw: np.ndarray        # (N, 478, 3) landmarks, NaN outside KEEP and where untracked
    tracked: float = 1.0
    mouth: np.ndarray | None = None     # (N, K, 3) canonical, gaps filled
    matrices: np.ndarray | None = None  # (N, 2, 3) pixel -> canonical similarity per frame
    neutral: np.ndarray | None = None   # (K, 3)
    target: np.ndarray | None = None    # (N, P) smoothed offsets from neutral
    meta: dict = field(default_factory=dict)
    views: list = field(default_factory=list)  # (N, INPUT_DIM) inputs of augmented audio

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def aperture(self) -> np.ndarray:
        return rep.aperture(self.target)


def list_sources(roots: list[Path]) -> list[tuple[Path, str]]:
    """(video path, speaker id) for every video in ``roots``, sorted by name for reproducibility."""
    out = []
    for root in roots:
        root = Path(root)
        speakers = {}
        tsv = root / "SOURCES.tsv"
        if tsv.exists():
            with open(tsv, newline="") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    if row.get("speaker_id"):
                        speakers[row["local_file"]] = row["speaker_id"]
        for path in sorted(root.iterdir()):
            if path.suffix.lower() in VIDEO_EXTS:
                out.append((path, speakers.get(path.name, f"{root.name}:{path.stem}")))
    return out


def track_clip(path: Path, points=KEEP) -> np.ndarray:
    """Landmarks ``(N, len(points), 3)`` at 25 fps (NaN where no face); ``points=None``: the
    whole 478-point mesh."""
    from lipdub.face import N_LANDMARKS, FaceTracker
    from lipdub.video import read_frames

    keep = list(range(N_LANDMARKS)) if points is None else list(points)
    rows = []
    with FaceTracker(mode="video") as tracker:
        for frame in read_frames(path, fps=FPS):
            lm = tracker.track(frame)
            rows.append(np.full((len(keep), 3), np.nan, np.float32) if lm is None else lm[keep])
    return np.stack(rows)


def clip_features(audio: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """``lipdub.audio.extract_features`` for ``n`` frames, prepared for the model, plus loudness."""
    from lipdub.audio import extract_features

    f = extract_features(audio, FPS, n, encoder=_encoder())
    return {"x": rep.prepare_input(f.whisper, f.mel, f.vad), "vad": np.asarray(f.vad, np.float32),
            "env": rep.loudness_envelope(audio, FPS, n)}


_ENCODER = []


def _encoder():
    from lipdub.audio.whisper import WhisperEncoder

    if not _ENCODER:
        _ENCODER.append(WhisperEncoder(threads=1))
    return _ENCODER[0]


def _cached(path: Path, make) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    data = make()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **data)
    tmp.rename(path)
    return data


def view_seed(digest: str, j: int) -> int:
    """Seed of augmented view ``j`` of the file with sha256 ``digest``: the same view every time,
    for its features (``augmented_views``) and its phone track (``add_phone_tracks``) alike."""
    return int(digest[:8], 16) + j


def augmented_views(path: Path, digest: str, n: int, count: int, cache_dir: Path) -> list[np.ndarray]:
    """Model inputs of ``count`` augmented versions of the clip's audio (``lipdub.motion.augment``),
    each cached; view ``j`` of a file is always the same (its seed comes from the file's hash)."""
    from lipdub.audio import load_audio
    from lipdub.motion.augment import AUGMENT_VERSION, augmented_audio

    views, audio = [], None
    for j in range(count):
        def make(j=j):
            nonlocal audio
            audio = load_audio(path) if audio is None else audio
            return {"x": clip_features(augmented_audio(audio, view_seed(digest, j)), n)["x"]}
        name = f"{digest[:16]}.aug{FEATURES_VERSION}.{AUGMENT_VERSION}_{j}.npz"
        views.append(_cached(cache_dir / name, make)["x"])
    return [v.astype(np.float32) for v in views]


def load_clip(path: Path, speaker: str, cache_dir: Path, views: int = 0) -> Clip:
    from lipdub.audio import load_audio

    digest = file_sha256(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tr = _cached(cache_dir / f"{digest[:16]}.track.npz", lambda: {"lm": track_clip(path)})
    lm_keep = tr["lm"]
    n = len(lm_keep)
    # The features cache is per front-end version: a new front end never reads old inputs.
    ft = _cached(cache_dir / f"{digest[:16]}.feat{FEATURES_VERSION}.npz", lambda: clip_features(load_audio(path), n))
    raw = np.full((n, 478, 3), np.nan, np.float32)
    raw[:, list(KEEP)] = lm_keep
    tracked = float(np.isfinite(lm_keep).all(axis=(1, 2)).mean()) if n else 0.0
    clip = Clip(path.name, speaker, digest, ft["x"].astype(np.float32), ft["vad"], ft["env"], raw, tracked,
                meta={"path": str(path)})
    if views and tracked >= MIN_TRACKED:
        clip.views = augmented_views(path, digest, n, views, cache_dir)
    return clip


def speed_clip(clip: Clip, factor: float, cache_dir: Path, lag: int = 0) -> Clip:
    """A training-only copy of a canonicalised ``clip`` spoken ``factor`` times as fast: its
    audio resampled (``augment.speed_change``), its mouth track resampled in time to match.

    ``lag``: the clip's A/V offset in its own frames (``offsets``), applied in the copy's frames.
    The copy's name is ``<name>~speed<factor>``; ``meta["base"]`` names the original.
    """
    from lipdub.audio import load_audio
    from lipdub.motion import training as tr
    from lipdub.motion.augment import AUGMENT_VERSION, speed_change

    n = max(12, round(clip.n / factor))
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    name = f"{clip.sha256[:16]}.speed{FEATURES_VERSION}.{AUGMENT_VERSION}_{factor:g}.npz"
    ft = _cached(Path(cache_dir) / name,
                 lambda: clip_features(speed_change(load_audio(clip.meta["path"]), factor), n))
    # Frame i of the copy shows the instant i * factor of the original.
    src = np.clip(np.arange(n) * factor, 0, clip.n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, clip.n - 1)
    w = (src - lo)[:, None].astype(np.float32)
    target = (1 - w) * clip.target[lo] + w * clip.target[hi]
    out = Clip(f"{clip.name}~speed{factor:g}", clip.speaker, clip.sha256, ft["x"].astype(np.float32),
               ft["vad"], ft["env"], raw=np.empty((0, 478, 3), np.float32), tracked=clip.tracked,
               neutral=clip.neutral, target=target.astype(np.float32),
               meta={**clip.meta, "base": clip.name, "speed": factor})
    return tr.shift_clip(out, round(lag / factor))


def build_reference(clips: list[Clip]) -> np.ndarray:
    """Mean (eyes-level, IOD-1) stable-point layout over clips: the canonical frame's reference."""
    refs = [rep.reference_face(c.raw[np.isfinite(c.raw[:, KEEP[0]]).all(1)])[list(STABLE_POINTS)]
            for c in clips]
    return rep.ref_from_stable(np.mean(refs, axis=0))


def filled_track(clip: Clip) -> np.ndarray:
    """The clip's landmarks ``(N, 478, 3)`` with untracked frames of the ``KEEP`` points filled."""
    from lipdub.face import fill_gaps

    raw = clip.raw.copy()
    ok = np.isfinite(raw[:, list(KEEP)]).all(axis=(1, 2))
    if ok.any() and not ok.all():
        raw[:, list(KEEP)] = fill_gaps(raw[:, list(KEEP)])
    return raw


def canonicalise(clip: Clip, ref: np.ndarray, smooth: int = 5) -> Clip:
    """Fill gaps, align, estimate neutral, set smoothed offsets as the target."""
    raw = filled_track(clip)
    mouth, clip.matrices, factor = rep.to_canonical(raw, ref)
    clip.mouth = mouth
    clip.neutral = rep.neutral_shape(mouth)
    off = (mouth - clip.neutral).reshape(clip.n, -1)
    clip.target = rep.smooth_offsets(off, smooth)
    clip.meta["factor"] = factor
    return clip


def build(roots: list[Path], cache_dir: Path, progress=None, limit: int | None = None,
          views: int = 0) -> tuple[list[Clip], np.ndarray, list[dict]]:
    """All usable clips (canonicalised), the reference face, and a manifest row per file;
    ``views``: augmented inputs per clip for training (``augmented_views``)."""
    sources = list_sources(roots)[:limit]
    clips, manifest = [], []
    with Progress(len(sources), "motion dataset", unit="clip", callback=progress) as bar:
        for path, speaker in sources:
            clip = load_clip(path, speaker, cache_dir, views)
            row = {"file": f"{path.parent.name}/{path.name}", "sha256": clip.sha256, "speaker": speaker,
                   "frames": clip.n, "tracked": round(clip.tracked, 3)}
            if clip.tracked < MIN_TRACKED or clip.n < 12:
                row["used"] = False
                row["why"] = f"face in {clip.tracked:.0%} of {clip.n} frames"
            else:
                row["used"] = True
                clips.append(clip)
            manifest.append(row)
            bar.update(1)
    ref = build_reference(clips)
    for clip in clips:
        canonicalise(clip, ref)
    return clips, ref, manifest


def add_phone_tracks(clips: list[Clip], cache_dir: Path, progress=None) -> None:
    """Insert each clip's PocketSphinx phone track (``lipdub.motion.phones``) into its inputs,
    before the voice-activity column, which stays last; each augmented view gets the track of its
    own augmented audio, so the phones are as noisy as the view. Cached per clip."""
    from lipdub.audio import load_audio
    from lipdub.motion import phones as ph
    from lipdub.motion.augment import AUGMENT_VERSION, augmented_audio

    with Progress(len(clips), "phone tracks", unit="clip", callback=progress) as bar:
        for clip in clips:
            def make(clip=clip):
                audio = load_audio(clip.meta["path"])
                out = {"clean": ph.phone_track(ph.phone_segments(audio), clip.n, FPS)}
                for j in range(len(clip.views)):
                    view = augmented_audio(audio, view_seed(clip.sha256, j))
                    out[f"view{j}"] = ph.phone_track(ph.phone_segments(view), clip.n, FPS)
                return out
            name = f"{clip.sha256[:16]}.phones{ph.PHONES_VERSION}.{AUGMENT_VERSION}_{len(clip.views)}.npz"
            tracks = _cached(cache_dir / name, make)
            clip.x = np.insert(clip.x, [-1], tracks["clean"], axis=1)
            clip.views = [np.insert(v, [-1], tracks[f"view{j}"], axis=1) for j, v in enumerate(clip.views)]
            bar.update(1)
