"""Face tracking (MediaPipe face mesh, 478 points in pixel units) and what is computed from it.

- ``mesh``: landmark index sets and ``FaceTracker``.
- ``geometry``: per-frame measurements (mouth aperture, eye distance, ...) and similarity alignment.
- ``track``: post-processing of a whole clip's track (gap filling, smoothing, stable crop boxes).

Importing this package does not import MediaPipe; only creating a ``FaceTracker`` does, so code
that only needs the index sets or the geometry stays light.
"""

from lipdub.face.geometry import (
    apply_similarity,
    canonical_align,
    eye_aspect_ratio,
    eye_centres,
    inter_ocular,
    mouth_aperture,
    mouth_width,
    similarity_transform,
)
from lipdub.face.mesh import (
    CHIN,
    EAR_POINTS,
    EYE_CORNERS,
    FACE_OVAL,
    INNER_LIP_PAIRS,
    JAW,
    LEFT_EYE,
    LEFT_EYE_CORNERS,
    LEFT_IRIS_CENTER,
    LIPS_INNER,
    LIPS_OUTER,
    LOWER_INNER_LIP,
    MOUTH_CORNERS,
    N_LANDMARKS,
    NOSE_BRIDGE,
    NOSE_TIP,
    RIGHT_EYE,
    RIGHT_EYE_CORNERS,
    RIGHT_IRIS_CENTER,
    STABLE_POINTS,
    UPPER_INNER_LIP,
    FaceTracker,
)
from lipdub.face.track import fill_gaps, missing_frames, mouth_boxes, smooth_track

__all__ = [
    "CHIN", "EAR_POINTS", "EYE_CORNERS", "FACE_OVAL", "INNER_LIP_PAIRS", "JAW", "LEFT_EYE", "LEFT_EYE_CORNERS",
    "LEFT_IRIS_CENTER", "LIPS_INNER", "LIPS_OUTER", "LOWER_INNER_LIP", "MOUTH_CORNERS",
    "N_LANDMARKS", "NOSE_BRIDGE", "NOSE_TIP", "RIGHT_EYE", "RIGHT_EYE_CORNERS", "RIGHT_IRIS_CENTER",
    "STABLE_POINTS", "UPPER_INNER_LIP", "FaceTracker",
    "apply_similarity", "canonical_align", "eye_aspect_ratio", "eye_centres", "inter_ocular", "mouth_aperture",
    "mouth_width", "similarity_transform",
    "fill_gaps", "missing_frames", "mouth_boxes", "smooth_track",
]
