"""Who is who in edited footage: face tracks per shot, people across shots, the dubbed person.

1. ``link_tracks``: faces of consecutive frames of one shot join a track when they overlap in
   place and size; a track bridges at most ``max_gap`` faceless frames and never a cut.
2. ``group_people``: tracks are joined into people by an identity descriptor (``identity``) when
   they never share a frame (one person is never twice in a frame).
3. ``choose_person``: the largest face, the N-th from the left, or the one at a point.
4. ``dubbed_track``: that person's landmarks per frame with everything the renderer needs: gaps
   interpolated only inside a track, smoothing and crop boxes per stretch, which frames are
   usable (large enough, not turned past a yaw limit) and the weight of the dubbed mouth per
   frame, faded in/out next to frames without a usable face.

No face-embedding library ships its weights offline and light enough (dlib's face_recognition
needs a 100 MB model package and a C++ build): the identity descriptor is the face's own 3-D
proportions (eye distance, face width and height, nose length; MediaPipe's depth makes them
nearly pose-free) and skin colour (CIE Lab mean and spread inside the face oval).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lipdub.face.mesh import CHIN, FACE_OVAL, LIPS_OUTER

# Landmarks of the proportions: (a, b) pairs, lengths in units of the eye distance.
_EYES = (33, 263)
_RATIOS = ((234, 454), (10, 152), (168, 1), (168, 152), (61, 291))
# Scale of each descriptor part: differences of this size count as one unit of distance.
_RATIO_SCALE = np.array([0.08, 0.10, 0.06, 0.08, 0.12], np.float32)
_COLOUR_SCALE = np.array([12.0, 4.0, 4.0, 6.0, 2.5, 2.5], np.float32)
#: Tracks closer than this (descriptor distance) may be one person. Chosen on half of 46
#: development speakers (one person called two costs 1, two people called one 5: the harmful
#: error), measured on the other half: 18 % of same-person pairs split, 0.7 % of different-person
#: pairs joined (benchmarks/identity_eval.py). A split only leaves a shot undubbed.
SAME_PERSON = 0.5


def _box(lm: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, float(np.sqrt(np.prod(np.maximum(hi - lo, 1e-3))))


def eye_distance(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[_EYES[0], :2] - lm[_EYES[1], :2]))


def yaw_degrees(lm: np.ndarray) -> float:
    """Head turn from the cheek-to-cheek line's depth (MediaPipe z is in x's units): 0 = frontal."""
    d = lm[454] - lm[234]
    return float(np.degrees(np.arctan2(abs(d[2]), max(abs(d[0]), 1e-6))))


def identity(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Identity descriptor of one face (float32, 11): 3-D proportions and skin colour."""
    iod = max(float(np.linalg.norm(lm[_EYES[0]] - lm[_EYES[1]])), 1e-3)
    ratios = [float(np.linalg.norm(lm[a] - lm[b])) / iod for a, b in _RATIOS]
    h, w = frame.shape[:2]
    oval = lm[list(FACE_OVAL), :2]
    x0, y0 = np.floor(oval.min(0)).astype(int)
    x1, y1 = np.ceil(oval.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    colour = np.zeros(6, np.float32)
    if x1 - x0 >= 4 and y1 - y0 >= 4:
        side = 48
        patch = cv2.resize(frame[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA)
        scale = np.array([side / (x1 - x0), side / (y1 - y0)], np.float32)
        mask = np.zeros((side, side), np.uint8)
        cv2.fillPoly(mask, [np.round((oval - [x0, y0]) * scale).astype(np.int32)], 1)
        lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
        inside = lab[mask.reshape(-1) > 0]
        if len(inside) >= 16:
            colour = np.concatenate([inside.mean(0), inside.std(0)]).astype(np.float32)
    return np.concatenate([np.asarray(ratios, np.float32) / _RATIO_SCALE, colour / _COLOUR_SCALE])


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass
class Track:
    """One face followed through consecutive frames of one shot."""

    shot: int
    frames: list[int] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    descriptors: list[np.ndarray] = field(default_factory=list)
    person: int = -1

    def descriptor(self) -> np.ndarray:
        return np.median(np.stack(self.descriptors), axis=0)

    @property
    def span(self) -> tuple[int, int]:
        return self.frames[0], self.frames[-1]

    def size(self) -> float:
        return float(np.median([eye_distance(lm) for lm in self.landmarks]))


def link_tracks(faces: list[list[np.ndarray]], descriptors: list[list[np.ndarray]],
                shots: np.ndarray, max_gap: int) -> list[Track]:
    """Tracks from every frame's faces: a face joins the track whose last face (at most
    ``max_gap`` frames back, same shot) it overlaps most in place and size; else it starts one."""
    tracks: list[Track] = []
    open_: list[Track] = []
    for t, (found, descs) in enumerate(zip(faces, descriptors)):
        open_ = [tr for tr in open_ if tr.shot == shots[t] and t - tr.frames[-1] <= max_gap + 1]
        pairs = []
        for i, lm in enumerate(found):
            c, s = _box(lm)
            for j, tr in enumerate(open_):
                pc, ps = _box(tr.landmarks[-1])
                jump = float(np.linalg.norm(c - pc)) / max(ps, 1e-3)
                ratio = s / max(ps, 1e-3)
                if jump <= 0.5 and 0.67 <= ratio <= 1.5:
                    pairs.append((jump, i, j))
        used_f, used_t = set(), set()
        for _, i, j in sorted(pairs):
            if i in used_f or j in used_t:
                continue
            used_f.add(i)
            used_t.add(j)
            open_[j].frames.append(t)
            open_[j].landmarks.append(found[i])
            open_[j].descriptors.append(descs[i])
        for i, lm in enumerate(found):
            if i not in used_f:
                tr = Track(int(shots[t]), [t], [lm], [descs[i]])
                tracks.append(tr)
                open_.append(tr)
    return tracks


def group_people(tracks: list[Track], threshold: float = SAME_PERSON) -> int:
    """Give every track a ``person`` number; returns how many people. Tracks join (closest
    first) when their descriptors are within ``threshold`` and no two of the joined tracks
    share a frame. A face that comes back in the same shot where it left (``_returns``) may
    differ twice as much: the picture around it says it is the same person."""
    n = len(tracks)
    parent = list(range(n))
    frames = [set(tr.frames) for tr in tracks]

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    desc = [tr.descriptor() for tr in tracks]
    pairs = sorted((identity_distance(desc[i], desc[j]), i, j)
                   for i in range(n) for j in range(i + 1, n))
    for d, i, j in pairs:
        if d > 2 * threshold:
            break
        if d > threshold and not _returns(tracks[i], tracks[j]):
            continue
        a, b = root(i), root(j)
        if a != b and not (frames[a] & frames[b]):
            parent[b] = a
            frames[a] |= frames[b]
    roots = {}
    for i, tr in enumerate(tracks):
        tr.person = roots.setdefault(root(i), len(roots))
    return len(roots)


def _returns(a: Track, b: Track) -> bool:
    """Whether one track takes up, later in the same shot, about where and how large the other
    left off (a face that left the picture or was hidden, and came back)."""
    if a.shot != b.shot:
        return False
    first, second = (a, b) if a.frames[-1] < b.frames[0] else (b, a)
    if first.frames[-1] >= second.frames[0]:
        return False
    (c0, s0), (c1, s1) = _box(first.landmarks[-1]), _box(second.landmarks[0])
    return float(np.linalg.norm(c1 - c0)) <= s0 and 0.67 <= s1 / max(s0, 1e-3) <= 1.5


def choose_person(tracks: list[Track], face_index: int | None = None,
                  face_point: tuple[float, float] | None = None,
                  frame_size: tuple[int, int] = (1, 1)) -> int | None:
    """The person to dub: the N-th face from the left (first frame with N+1 faces), the first face
    that covers ``face_point`` (fractions of the frame; else the nearest face), or by default the
    largest face among the people on screen at least a quarter as long as the longest one."""
    if not tracks:
        return None
    by_frame: dict[int, list[tuple[np.ndarray, Track]]] = {}
    for tr in tracks:
        for f, lm in zip(tr.frames, tr.landmarks):
            by_frame.setdefault(f, []).append((lm, tr))
    if face_index is not None:
        for f in sorted(by_frame):
            if len(by_frame[f]) > face_index:
                faces = sorted(by_frame[f], key=lambda ft: float(_box(ft[0])[0][0]))
                return faces[face_index][1].person
        return None
    if face_point is not None:
        point = np.array(face_point, np.float32) * np.array(frame_size, np.float32)

        def gap(ft):  # distance from the point to the face's box (0 inside)
            lo, hi = ft[0][:, :2].min(0), ft[0][:, :2].max(0)
            return float(np.linalg.norm(np.maximum(0, np.maximum(lo - point, point - hi))))

        # The first face that covers the point; if none ever does, the nearest one.
        best = None
        for f in sorted(by_frame):
            for ft in by_frame[f]:
                d = gap(ft)
                if d == 0:
                    return ft[1].person
                if best is None or d < best[0]:
                    best = (d, ft[1].person)
        return best[1]
    people: dict[int, list[Track]] = {}
    for tr in tracks:
        people.setdefault(tr.person, []).append(tr)
    screen = {p: sum(len(t.frames) for t in ts) for p, ts in people.items()}
    longest = max(screen.values())
    sizes = {p: float(np.median([eye_distance(lm) for t in ts for lm in t.landmarks]))
             for p, ts in people.items() if screen[p] >= 0.25 * longest}
    return max(sizes, key=sizes.get)


@dataclass
class DubbedTrack:
    """The dubbed person's track over every frame of the footage (see ``dubbed_track``)."""

    raw: np.ndarray        # (N, 478, 3) landmarks: interpolated inside tracks, held elsewhere
    landmarks: np.ndarray  # (N, 478, 3) smoothed per stretch (never across a cut or a gap)
    boxes: np.ndarray      # (N, 4) int32 mouth boxes, per track
    present: np.ndarray    # (N,) bool: the person's face is in the frame (tracked or bridged)
    usable: np.ndarray     # (N,) bool: ... and large and frontal enough to dub
    weight: np.ndarray     # (N,) float32 0..1: how much of the dubbed mouth the frame shows


def dubbed_track(tracks: list[Track], person: int, shots: np.ndarray, width: int, height: int,
                 smooth: int = 5, min_eye_distance: float = 12.0, max_yaw: float = 45.0,
                 fade: int = 3) -> DubbedTrack:
    """``person``'s track over all ``len(shots)`` frames.

    Inside one of the person's tracks, frames the tracker missed (at most ``max_gap`` of
    ``link_tracks``) are interpolated; nothing is interpolated across a cut or a longer gap.
    Frames without the person hold the nearest frame's landmarks and box (so every array stays
    finite) and get weight 0: they are never drawn on. Usable: the eyes at least
    ``min_eye_distance`` apart, turned at most ``max_yaw``, mouth and chin inside the picture.
    A usable frame next to an unusable one of the same shot fades: weights 1/(fade+1),
    2/(fade+1), ... At a cut the switch is immediate."""
    from lipdub.face.track import mouth_boxes, smooth_track

    n = len(shots)
    raw = np.full((n, 478, 3), np.nan, np.float32)
    landmarks = raw.copy()
    boxes = np.zeros((n, 4), np.int32)
    present = np.zeros(n, bool)
    for tr in (t for t in tracks if t.person == person):
        frames = np.asarray(tr.frames)
        span = np.arange(frames[0], frames[-1] + 1)
        # Linear interpolation over the few frames the track bridged.
        flat = np.stack(tr.landmarks).astype(np.float32).reshape(len(frames), -1)
        filled = np.stack([np.interp(span, frames, flat[:, k]) for k in range(flat.shape[1])], 1)
        raw[span] = filled.reshape(len(span), 478, 3)
        landmarks[span] = smooth_track(raw[span], smooth)
        boxes[span] = mouth_boxes(landmarks[span], width, height)
        present[span] = True
    if not present.any():
        raise ValueError(f"person {person} has no frame")
    # Hold the nearest present frame everywhere else.
    have = np.flatnonzero(present)
    missing = np.flatnonzero(~present)
    if missing.size:
        pos = np.clip(np.searchsorted(have, missing), 0, have.size - 1)
        left = have[np.clip(pos - 1, 0, have.size - 1)]
        right = have[pos]
        nearest = np.where(np.abs(missing - left) <= np.abs(right - missing), left, right)
        raw[missing], landmarks[missing], boxes[missing] = raw[nearest], landmarks[nearest], boxes[nearest]
    usable = present.copy()
    mouth = list(LIPS_OUTER) + [CHIN]
    for f in have:
        lm = landmarks[f]
        # A face partly out of the picture (leaving or entering it) is not dubbed while its
        # mouth or chin is outside: the tracker only guesses those points.
        inside = ((lm[mouth, 0] >= 0) & (lm[mouth, 0] < width) & (lm[mouth, 1] >= 0)
                  & (lm[mouth, 1] < height)).all()
        if not inside or eye_distance(lm) < min_eye_distance or yaw_degrees(lm) > max_yaw:
            usable[f] = False
    return DubbedTrack(raw, landmarks, boxes, present, usable, fade_weights(usable, shots, fade))


def fade_weights(usable: np.ndarray, shots: np.ndarray, fade: int) -> np.ndarray:
    """Per frame 0 (not usable) .. 1: ramps over ``fade`` frames next to unusable frames of the
    same shot; a shot's first and last frames need no ramp (the cut hides the switch)."""
    usable = np.asarray(usable, bool)
    n = len(usable)
    dist = np.full(n, np.inf)
    last, shot = -np.inf, None
    for k in range(n):  # frames since the last unusable frame of this shot
        if shots[k] != shot:
            last, shot = -np.inf, shots[k]
        if not usable[k]:
            last = k
        dist[k] = k - last
    nxt, shot = np.inf, None
    for k in range(n - 1, -1, -1):
        if shots[k] != shot:
            nxt, shot = np.inf, shots[k]
        if not usable[k]:
            nxt = k
        dist[k] = min(dist[k], nxt - k)
    w = np.clip(dist / (fade + 1), 0.0, 1.0) if fade > 0 else (dist > 0).astype(np.float64)
    return np.where(usable, w, 0.0).astype(np.float32)
