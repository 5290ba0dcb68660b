"""Photo avatars: a single image animated (idle motion) and lip-synced without any footage.

- ``idle``: ``make_idle_template(image, landmarks, ...)`` -> frames (blinks, head motion,
  breathing) with their exact landmarks.
- ``meshwarp``: the landmark-driven piecewise-affine warp everything is drawn with.
- ``mouth``: ``PhotoMouthRenderer`` (``render_chunk(frames, frame_landmarks, target_landmarks)``),
  lips and jaw warped to the motion model's targets, the opening painted by ``interior`` (the
  photo's own teeth, where it shows them, moved with their jaw).
- ``interior``: the mouth interior's canvas and painters; ``interior_layers`` draws teeth, tongue
  and throat, coloured by the fitted colour model (``train_interior --colours``; its data and
  held-out speakers: ``interior_data``).
- ``speak``: template + audio features -> output frames (used by ``lipdub.demo``).
- ``prepare``: ``prepare_photo(image, out_dir, ...)`` -> an avatar folder of kind "photo".

Importing this package is light; MediaPipe, onnxruntime and torch load only when used.
"""

from lipdub.photo.idle import IdleOptions, IdleTemplate, blink_schedule, make_idle_template
from lipdub.photo.mouth import PhotoMouthRenderer, open_mouth_landmarks, render_photo_mouth
from lipdub.photo.prepare import PhotoOptions, load_photo, prepare_photo

__all__ = ["IdleOptions", "IdleTemplate", "PhotoMouthRenderer", "PhotoOptions", "blink_schedule",
           "load_photo", "make_idle_template", "open_mouth_landmarks", "prepare_photo",
           "render_photo_mouth"]
