"""MediaPipe face-mesh landmark indices and ``FaceTracker``, which returns one face per frame.

Index conventions follow MediaPipe: "left"/"right" are the *subject's* sides, so on an unmirrored
frontal photo the RIGHT eye (33/133, iris 468) is on the image's left. All landmark arrays are
``float32 (478, 3)`` in pixel units: ``(x * width, y * height, z * width)``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

import numpy as np

from lipdub.errors import MissingDependencyError
from lipdub.face import zoom

#: 468 mesh points plus 10 iris points (refine_landmarks=True).
N_LANDMARKS = 478

# --- Mouth -----------------------------------------------------------------------------------
#: Outer lip contour as a closed ring: right corner 61, along the upper lip to the left corner
#: 291, back along the lower lip (0 = upper lip top centre, 17 = lower lip bottom centre).
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409,
              291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
#: Inner lip contour (the opening) as a ring: 78 -> upper inner lip -> 308 -> lower inner lip.
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415,
              308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
#: Midpoints of the inner upper and lower lip; their gap is the mouth opening at the centre.
UPPER_INNER_LIP = 13
LOWER_INNER_LIP = 14
#: Vertically facing (upper, lower) inner-lip pairs across the middle of the mouth; averaging a
#: few is steadier than the single centre pair when the lips are asymmetric.
INNER_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))
#: Mouth corners (subject's right, subject's left).
MOUTH_CORNERS = (61, 291)

# --- Face outline ----------------------------------------------------------------------------
#: Whole face outline as a ring starting at the top of the forehead (10), clockwise in the image.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109)
#: Jaw and chin contour, in order from the left cheek at ear height (454) under the chin (152)
#: to the right cheek (234). These points move when the mouth opens.
JAW = (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
       148, 176, 149, 150, 136, 172, 58, 132, 93, 234)
#: Bottom of the chin.
CHIN = 152

# --- Eyes ------------------------------------------------------------------------------------
#: Eye contours as rings (outer corner, lower lid, inner corner, upper lid).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
#: (outer, inner) corners of each eye; they do not move with blinks or gaze.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
EYE_CORNERS = (33, 133, 362, 263)
#: Eye-aspect-ratio points per side: (outer corner, upper 1, upper 2, inner corner, lower 2,
#: lower 1), the usual p1..p6 order, so EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|).
EAR_POINTS = {"right": (33, 160, 158, 133, 153, 144),
              "left": (263, 387, 385, 362, 380, 373)}
#: Iris centres (the iris rings are 469-472 and 474-477).
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473

# --- Nose ------------------------------------------------------------------------------------
#: Nose tip.
NOSE_TIP = 1
#: Nose bridge from between the eyes (168) down to just above the tip (5).
NOSE_BRIDGE = (168, 6, 197, 195, 5)

#: Points that keep their place on the skull while speaking (no mouth, jaw or eyelid points):
#: what a head pose / similarity alignment should be estimated from.
STABLE_POINTS = EYE_CORNERS + NOSE_BRIDGE + (4, NOSE_TIP)

# --- Tracker ---------------------------------------------------------------------------------

# MediaPipe's C++ side prints start-up chatter straight to file descriptor 2 (absl logging before
# InitializeLog; GLOG_minloglevel is not honoured by 0.10.x). These lines are known to be harmless;
# anything else printed while we listen is passed through, so real errors stay visible.
_HARMLESS_NATIVE_LINES = re.compile(
    r"inference_feedback_manager|landmark_projection_calculator|XNNPACK delegate"
    r"|absl::InitializeLog|^\s*$")
# dup2 on fd 2 is process-wide: two trackers starting at once in different threads must not
# interleave their redirections, or one would restore the other's temporary file as stderr.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _filtered_native_stderr() -> Iterator[None]:
    """Hold back fd-2 output of the block, then re-print every line that is not known chatter."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved_fd = os.dup(2)
        except (OSError, ValueError, AttributeError):
            # No usable fd 2 (some service managers): nothing to filter.
            yield
            return
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
                held.seek(0)
                kept = [line for line in held.read().decode(errors="replace").splitlines()
                        if not _HARMLESS_NATIVE_LINES.search(line)]
                if kept:
                    sys.stderr.write("\n".join(kept) + "\n")


def _bbox(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (x, y) and area of the landmarks' bounding box."""
    lo = landmarks[:, :2].min(axis=0)
    hi = landmarks[:, :2].max(axis=0)
    return (lo + hi) / 2, float(np.prod(hi - lo))


class FaceTracker:
    """One face per frame from MediaPipe face mesh (478 points with irises), in pixel units.

    ``mode="video"`` tracks from frame to frame (fast: detection only runs while fewer than
    ``max_faces`` faces are followed); ``mode="image"`` detects afresh on every call, for stills.

    Which face: the one with the largest landmark bounding box, or with ``face_index=N`` the N-th
    face counted from the image's left edge (by bounding-box centre x, 0-based). In video mode the
    choice is made on the first frame with a face; later frames take the face nearest to the last
    one returned, so identity holds when people cross in size. A face that jumped further than its
    own size is treated as a different person (None is returned) until ``reacquire_after`` frames
    without the face have passed, after which the rule above chooses again (e.g. after a cut).

    Small faces: when the whole frame shows no face, overlapping square crops are searched
    (``lipdub.face.zoom``: ~25 ms for a 1080p frame, up to ~200 ms when all three crop sizes come
    up empty). In video mode that happens on the first faceless frame, then every
    ``search_every`` faceless frames, the interval doubling after each fruitless search (up to 8x)
    so long stretches without a face stay cheap. A face found that way is then tracked inside a
    crop that follows it.
    """

    def __init__(self, mode: str = "video", max_faces: int = 3, face_index: int | None = None,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 reacquire_after: int = 25, search_every: int = 10):
        if mode not in ("video", "image"):
            raise ValueError(f"mode must be 'video' or 'image', not {mode!r}")
        if face_index is not None and face_index < 0:
            raise ValueError(f"face_index must be >= 0, not {face_index}")
        self.mode = mode
        self.face_index = face_index
        # Counting faces from the left needs to see at least N+1 of them.
        self.max_faces = max(int(max_faces), 1 if face_index is None else face_index + 1)
        self.reacquire_after = reacquire_after
        self.search_every = max(1, int(search_every))
        self._confidence = (min_detection_confidence, min_tracking_confidence)
        self._mesh = self._new_mesh(static=(mode == "image"), max_faces=self.max_faces)
        self._search_mesh = None  # still-image mesh for crops, made on first need
        self._roi_mesh = None  # video mesh for the crop that follows a small face
        self._roi: tuple[int, int, int] | None = None
        self._roi_misses = 0
        self._frames_since_search = self.search_every  # search on the first faceless frame
        self.redetect_every = 5  # faces_in: a still-image look for new faces every N frames
        self._frames_since_detect = 0
        self._search_interval = self.search_every
        self._warmed_up = False
        self._last_centre: np.ndarray | None = None
        self._last_size = 0.0
        self._frames_without = 0

    def _new_mesh(self, static: bool, max_faces: int):
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError(
                f"mediapipe is not usable ({exc}); pip install 'mediapipe==0.10.21' 'numpy<2'") from exc
        with _filtered_native_stderr():
            mesh = face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=self._confidence[0],
                min_tracking_confidence=self._confidence[1])
            # The graph opens its calculators asynchronously and they log as they do; one
            # (faceless) frame waits for all of them, so their chatter lands inside the filter.
            mesh.process(np.zeros((64, 64, 3), np.uint8))
        return mesh

    def _faces(self, mesh, image: np.ndarray, x0: int = 0, y0: int = 0) -> list[np.ndarray]:
        """All faces ``mesh`` finds in ``image``, in pixels of the frame ``image`` was cut from."""
        image = np.ascontiguousarray(image)
        if self._warmed_up:
            result = mesh.process(image)
        else:
            # The first frame with a face logs once more (landmark projection warning).
            with _filtered_native_stderr():
                result = mesh.process(image)
            self._warmed_up = bool(result.multi_face_landmarks)
        h, w = image.shape[:2]
        scale = np.array([w, h, w], dtype=np.float32)
        offset = np.array([x0, y0, 0], dtype=np.float32)
        return [np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32) * scale + offset
                for face in (result.multi_face_landmarks or [])]

    def track(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks ``float32 (478, 3)`` in pixels of the chosen face, or None if there is none."""
        if self._mesh is None:
            raise RuntimeError("FaceTracker is closed")
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._roi is not None:
            chosen = self._track_in_roi(frame)
        else:
            chosen = self._choose(self._faces(self._mesh, frame))
            self._frames_since_search += 1
            if chosen is None and (self.mode == "image" or self._frames_since_search >= self._search_interval):
                self._frames_since_search = 0
                chosen = self._choose(self._search(frame))
                if chosen is None:
                    self._search_interval = min(2 * self._search_interval, 8 * self.search_every)
                elif self.mode == "video":
                    self._roi = zoom.roi_around(chosen, *frame.shape[:2])
            if chosen is not None:
                self._search_interval = self.search_every
        if chosen is None:
            self._frames_without += 1
        else:
            self._last_centre, area = _bbox(chosen)
            self._last_size = float(np.sqrt(area))
            self._frames_without = 0
        return chosen

    def faces_in(self, frame_rgb: np.ndarray) -> list[np.ndarray]:
        """Every face in the frame (up to ``max_faces``), landmarks ``(478, 3)`` in pixels, in no
        particular order; the caller decides who is who (``lipdub.face.people``). Video mode
        follows them from frame to frame; when the whole frame shows none, the zoomed search and
        the crop that follows a small face work as in ``track``."""
        if self._mesh is None:
            raise RuntimeError("FaceTracker is closed")
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._roi is not None and self.mode == "video":
            # Following one small face in a crop: now and then look at the whole frame, where
            # larger faces (or several) may have appeared.
            self._frames_since_detect += 1
            if self._frames_since_detect >= self.redetect_every:
                self._frames_since_detect = 0
                whole = self._faces(self._still_mesh(), frame)
                if whole:
                    self._drop_roi()
                    return whole
        if self._roi is not None:
            if self._roi_mesh is None:
                self._roi_mesh = self._new_mesh(static=False, max_faces=1)
            x0, y0, side = self._roi
            faces = self._faces(self._roi_mesh, frame[y0:y0 + side, x0:x0 + side], x0, y0)
            if faces:
                self._roi_misses = 0
                self._roi = zoom.follow_roi(faces[0], self._roi, *frame.shape[:2])
                return faces
            self._roi_misses += 1
            if self._roi_misses <= 5:
                return []
            self._drop_roi()
        faces = self._faces(self._mesh, frame)
        self._frames_since_detect += 1
        if self.mode == "video" and (not faces or self._frames_since_detect >= self.redetect_every):
            # MediaPipe's tracking graph, once it has lost its faces (or holds some), does not
            # reliably pick up faces that appear later: look with a still-image pass, and when it
            # sees more, start the tracking graph afresh (it detects on its first frame).
            self._frames_since_detect = 0
            fresh = self._faces(self._still_mesh(), frame)
            if len(fresh) > len(faces):
                faces = fresh
                self._mesh.close()
                self._mesh = self._new_mesh(static=False, max_faces=self.max_faces)
        self._frames_since_search += 1
        if not faces and (self.mode == "image" or self._frames_since_search >= self._search_interval):
            self._frames_since_search = 0
            faces = self._search(frame)
            if not faces:
                self._search_interval = min(2 * self._search_interval, 8 * self.search_every)
            elif self.mode == "video":
                self._roi = zoom.roi_around(max(faces, key=lambda f: _bbox(f)[1]), *frame.shape[:2])
        if faces:
            self._search_interval = self.search_every
        return faces

    def _still_mesh(self):
        if self._search_mesh is None:
            self._search_mesh = self._new_mesh(static=True, max_faces=self.max_faces)
        return self._search_mesh

    def restart(self) -> None:
        """Forget every face followed so far (call at a cut: the next frame is a new view, and
        MediaPipe's tracking would otherwise fit the old faces' places onto it for a frame)."""
        if self._mesh is None:
            raise RuntimeError("FaceTracker is closed")
        if self.mode == "video":
            self._mesh.close()
            self._mesh = self._new_mesh(static=False, max_faces=self.max_faces)
        self._drop_roi()
        self._last_centre, self._last_size = None, 0.0
        self._frames_without = 0
        self._frames_since_search = self._search_interval = self.search_every

    def _drop_roi(self) -> None:
        self._roi, self._roi_misses = None, 0
        self._frames_since_search = self.search_every
        if self._roi_mesh is not None:
            self._roi_mesh.close()
            self._roi_mesh = None

    def _search(self, frame: np.ndarray) -> list[np.ndarray]:
        """Faces in overlapping crops, from the coarsest level of crops that shows any."""
        for level in zoom.search_levels(*frame.shape[:2]):
            faces = [face for x0, y0, side in level
                     for face in self._faces(self._still_mesh(), frame[y0:y0 + side, x0:x0 + side], x0, y0)]
            if faces:
                return zoom.distinct_faces(faces)
        return []

    def _track_in_roi(self, frame: np.ndarray) -> np.ndarray | None:
        if self._roi_mesh is None:
            self._roi_mesh = self._new_mesh(static=False, max_faces=1)
        x0, y0, side = self._roi
        chosen = self._choose(self._faces(self._roi_mesh, frame[y0:y0 + side, x0:x0 + side], x0, y0))
        if chosen is None:
            self._roi_misses += 1
            if self._roi_misses > 5:
                # Lost: back to the whole frame (and searching), with a fresh crop tracker later.
                self._drop_roi()
            return None
        self._roi_misses = 0
        self._roi = zoom.follow_roi(chosen, self._roi, *frame.shape[:2])
        return chosen

    def _choose(self, faces: list[np.ndarray]) -> np.ndarray | None:
        if not faces:
            return None
        following = (self.mode == "video" and self._last_centre is not None
                     and self._frames_without <= self.reacquire_after)
        if following:
            distances = [float(np.linalg.norm(_bbox(f)[0] - self._last_centre)) for f in faces]
            best = int(np.argmin(distances))
            return faces[best] if distances[best] <= self._last_size else None
        if self.face_index is not None:
            by_x = sorted(faces, key=lambda f: float(_bbox(f)[0][0]))
            return by_x[self.face_index] if self.face_index < len(by_x) else None
        return max(faces, key=lambda f: _bbox(f)[1])

    def close(self) -> None:
        """Stop the MediaPipe graphs (idempotent)."""
        for name in ("_mesh", "_search_mesh", "_roi_mesh"):
            mesh = getattr(self, name)
            if mesh is not None:
                mesh.close()
                setattr(self, name, None)

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
