"""End-to-end generation: speech audio + a trained avatar -> a lip-synced video.

Stages, each working on a chunk of consecutive output frames so a streaming front end can join
them differently:

1. ``target_chunks``: which template frame each output frame is drawn over (ping-pong walk) and
   the mouth it should show (the motion model's landmarks, or the template's own with
   ``shapes="template"``).
2. ``template_frames``: those template frames, decoded from the avatar's JPEGs a few ahead, so
   memory does not grow with the output length.
3. ``render_frames`` (``lipdub.mouth_drawing``): renderer (onnxruntime, batched) and paste-back.
4. ``generate``: streaming H.264 encode with the speech muxed in.

Video-to-video controls (all in ``GenerateOptions``): which template frames are walked
(``template_frames``, ``start_frame``, ``loop``), template landmark smoothing (``smooth_source``),
how much of the dubbed mouth shows per frame (``fade_in``/``fade_out``, ``keep_silence``: a
per-frame weight that blends the rendered frame with the template's own, see ``dub_weights``),
and the output raster (``max_size``, ``fps``, ``crf``, ``preset``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from lipdub.background import background
from lipdub.errors import InputError
from lipdub.mouth_drawing import (draw_mouths, is_photo, load_renderer,  # noqa: F401 (re-exported)
                                  render_frames, spans, template_frames)
from lipdub.progress import Progress, ProgressFn
from lipdub.render.train import TrainOptions
from lipdub.timeline import (LOOP_MODES, SILENCE_RAMP, TemplateView, blend,  # noqa: F401 (re-exported)
                             dub_weights, frame_weights, output_order, smooth_track, template_order)


#: generate: finished frames queued between the render thread and the encoder's pipe.
RENDER_AHEAD = 8
#: Output frames of the first motion run: the first frame waits for that run's features and
#: motion (not for 250 frames'; the first render batch is short too, see ``mouth_drawing``).
FIRST_MOTION_FRAMES = 50


@dataclass(frozen=True)
class GenerateOptions:
    template: object = None          # another prepared avatar (folder or Avatar, same person)
    shapes: str = "audio"            # "audio": motion model; "template": the frames' own mouths
    mouth_scale: float = 1.0         # mouth-opening amplitude (1 = the avatar's own range)
    motion_smooth: float = 1.0       # temporal smoothing of the motion (Gaussian sigma, frames)
    match_voice: bool = True         # re-key the amplitude map to the driving voice (calibrate.match_voice)
    chunk: int = 32                  # output frames per stage chunk
    batch_size: int = 8              # renderer batch (onnxruntime)
    threads: int | None = None       # onnxruntime threads (default 1: the encoder needs a core)
    crf: int = 18
    preset: str = "veryfast"
    train: TrainOptions | None = None  # train the optional U-Net first (None: never; see ensure_avatar)
    cache_dir: str | None = None     # raw-video avatars (default $LIPDUB_CACHE or ~/.cache/lipdub)
    face_index: int | None = None    # raw video: dub the N-th face from the left (default: largest)
    face_point: tuple[float, float] | None = None  # ... or the face at (x, y), fractions
    use_network: bool = True         # use a trained U-Net if the avatar has one (False: never)
    # video-to-video controls
    fade_in: int = 0                 # frames over which the dubbed mouth blends in from the template's
    fade_out: int = 0                # frames over which it blends back to the template's own mouth
    template_frames: int | None = None  # use only the first N template frames (None: all)
    start_frame: int = 0             # the walk starts at this template frame (within those N)
    loop: str = "pingpong"           # past the last template frame: "pingpong" back, or "wrap" to 0
    smooth_source: int = 0           # extra centred smoothing of the template landmarks (frames; 0/1 off)
    keep_silence: bool = False       # leave the template's own mouth where the audio is silent
    max_size: int | None = None      # longer side of the output video in pixels (downscale only)
    fps: float | None = None         # output frame rate (default: the avatar's)

    def __post_init__(self):
        if self.shapes not in ("audio", "template"):
            raise ValueError(f"shapes must be 'audio' or 'template', got {self.shapes!r}")
        if self.chunk < 1 or self.batch_size < 1:
            raise ValueError("chunk and batch_size must be positive")
        if self.loop not in LOOP_MODES:
            raise ValueError(f"loop must be one of {', '.join(LOOP_MODES)}, got {self.loop!r}")
        for name in ("fade_in", "fade_out", "start_frame", "smooth_source"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.template_frames is not None and not (int(self.template_frames) == self.template_frames
                                                     and self.template_frames >= 1):
            raise ValueError(f"template_frames must be >= 1, got {self.template_frames!r}")
        if self.max_size is not None and not 16 <= self.max_size:
            raise ValueError(f"max_size must be at least 16 pixels, got {self.max_size!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        if self.mouth_scale < 0 or self.motion_smooth < 0:
            raise ValueError("mouth_scale and motion_smooth must be >= 0")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        from lipdub.video import X264_PRESETS

        if self.face_index is not None or self.face_point is not None:
            from lipdub.avatar_folder import PrepareOptions

            PrepareOptions(face_index=self.face_index, face_point=self.face_point)  # same checks
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {self.preset!r}")


def template_for(avatar, options: GenerateOptions):
    """The template a generation draws its frames from: ``options.template`` (or the avatar),
    cut to ``template_frames`` and with ``smooth_source`` applied."""
    template = _load_avatar(options.template) if options.template else avatar
    if options.template_frames is not None or options.smooth_source > 1:
        template = TemplateView(template, options.template_frames, options.smooth_source)
    if options.start_frame >= template.n_frames:
        raise InputError(f"start frame {options.start_frame} is past the template's last frame "
                         f"({template.n_frames - 1})")
    return template


def _load_avatar(avatar):
    from lipdub.avatar import Avatar

    return avatar if hasattr(avatar, "landmarks") else Avatar.load(avatar)


def _features_chunk(features, start: int, stop: int):
    from lipdub.audio import AudioFeatures

    def cut(a):
        return None if a is None else a[start:stop]

    return AudioFeatures(fps=features.fps, n_frames=stop - start, duration=features.duration,
                         mel=cut(features.mel), whisper=cut(features.whisper), vad=cut(features.vad))


def target_chunks(template, features, n_out: int, options: GenerateOptions,
                  motion_chunk: int = 250, order: np.ndarray | None = None,
                  first: int | None = FIRST_MOTION_FRAMES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(template frame indices (n,), target landmarks (n, 478, 3)) per run of output frames.

    ``order``: template frame under each output frame (default ``output_order(...)``). The runs
    are ``motion_chunk`` frames, the first ``first`` (the same landmarks: each run carries its
    context)."""
    if order is None:
        order = output_order(n_out, template, options, getattr(features, "fps", None))
    if options.shapes == "template":
        for s, e in spans(n_out, motion_chunk):
            idx = order[s:e]
            yield idx, template.landmarks[idx]
        return
    from lipdub.motion import MotionModel, audio_to_motion, calibrate_avatar
    from lipdub.motion.calibrate import VOICE_SECONDS, match_voice

    model = MotionModel.load()
    cal = calibrate_avatar(template, model)  # what streaming uses (it cannot hear ahead)
    if options.match_voice:
        # The voice is heard on the audio's start (whose features the first runs need anyway).
        fps = float(getattr(features, "fps", None) or template.fps)
        head = _features_chunk(features, 0, min(n_out, int(round(VOICE_SECONDS * fps))))
        cal = match_voice(cal, head, model, options.motion_smooth)
    ctx = model.receptive_field + 8  # a little beyond the receptive field for the silence gate
    for s, e in spans(n_out, motion_chunk, first):
        a, b = max(0, s - ctx), min(n_out, e + ctx)
        feats = _features_chunk(features, a, b)
        lms = audio_to_motion(feats, template, options.mouth_scale, options.motion_smooth,
                              frame_indices=order[s:e], left=s - a, right=b - e, model=model,
                              calibration=cal)
        yield order[s:e], lms


def _features(audio, fps: float, options: GenerateOptions, progress: ProgressFn | None = None):
    from lipdub.audio import AudioFeatures, extract_features

    if isinstance(audio, AudioFeatures):
        return audio
    need = options.shapes == "audio"
    vad = need or options.keep_silence
    if not need:
        return extract_features(audio, fps=fps, whisper=False, mel=False, vad=vad, progress=progress)
    # Whisper states and mel windows are computed as the frame loop reaches them (the same
    # values): the first frame no longer waits for all of the audio, nor memory for its length.
    from lipdub.audio import load_audio
    from lipdub.features_on_demand import on_demand_features

    audio = load_audio(audio) if isinstance(audio, (str, os.PathLike)) else audio
    return on_demand_features(audio, fps, vad=vad)


def _resized(frames_in: Iterator[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    import cv2

    for frame in frames_in:
        if frame.shape[1::-1] != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        yield frame


def output_size_for(template, options: GenerateOptions) -> tuple[int, int]:
    """(width, height) of the output: the template's, shrunk to ``max_size`` (even sides)."""
    if options.max_size is None:
        return template.width, template.height
    from lipdub.video import output_size

    return output_size(template.width, template.height, options.max_size)


def _frames(avatar, template, features, options: GenerateOptions,
            renderer=None) -> Iterator[np.ndarray]:
    renderer = load_renderer(avatar, options) if renderer is None else renderer
    n_out = features.n_frames
    order = output_order(n_out, template, options, features.fps)
    runs = target_chunks(template, features, n_out, options, order=order)
    out = render_frames(renderer, template, runs, options, order=order,
                        weights=frame_weights(template, order, options, features))
    size = output_size_for(template, options)
    yield from (out if size == (template.width, template.height) else _resized(out, size))


def frames(avatar, audio, options: GenerateOptions = GenerateOptions(),
           progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """Output frames (RGB uint8) of ``avatar`` saying ``audio`` (a path, 16 kHz array or
    ``AudioFeatures``), one per ``1/fps`` of audio (``options.fps``, default the avatar's), streamed."""
    avatar = ensure_avatar(avatar, options, progress)
    template = template_for(avatar, options)
    features = _features(audio, options.fps or template.fps, options, progress)
    yield from _frames(avatar, template, features, options)


def cache_root(options: GenerateOptions) -> Path:
    root = options.cache_dir or os.environ.get("LIPDUB_CACHE") or Path.home() / ".cache" / "lipdub"
    return Path(root)


def ensure_avatar(video, options: GenerateOptions = GenerateOptions(),
                  progress: ProgressFn | None = None):
    """A prepared avatar for ``video``: an ``Avatar`` or avatar folder is used as is; a raw video
    is prepared once, cached under ``cache_root()/<sha256 of the file>``. No training: the
    renderer works from the mouth bank made at preparation. ``options.train`` (a
    ``TrainOptions``) opts in to training the optional U-Net first where there is none."""
    if hasattr(video, "landmarks"):
        avatar = video
    else:
        from lipdub.avatar import Avatar, PrepareOptions, file_sha256, prepare

        path = Path(video)
        if not path.exists():
            raise InputError(f"no such file or folder: {path}")
        if path.is_dir():
            avatar = Avatar.load(path)
        else:
            prep = PrepareOptions(face_index=options.face_index, face_point=options.face_point)
            who = ("" if prep.face_index is None and prep.face_point is None else
                   f"-face{prep.face_index}" if prep.face_index is not None else
                   "-at{:.3f},{:.3f}".format(*prep.face_point))
            folder = cache_root(options) / (file_sha256(path)[:32] + who)
            try:
                avatar = Avatar.load(folder)
                if "shots" not in avatar.manifest:  # prepared before shots and people were tracked
                    raise ValueError("old avatar")
            except Exception:  # not prepared yet, or a broken earlier attempt: prepare afresh
                avatar = prepare(path, folder, prep, progress, overwrite=True)
    if options.train is not None and not is_photo(avatar):
        from lipdub.render.export import ONNX_FILE
        from lipdub.render.train import train_renderer

        if not (Path(avatar.path) / ONNX_FILE).exists():
            train_renderer(avatar, options.train, progress)
    return avatar


def _load_models(avatar, options: GenerateOptions):
    """The avatar's renderer, with the (cached) motion model loaded beside it."""
    if options.shapes == "audio":
        from lipdub.motion import MotionModel
        # What target_chunks imports before its first run: here it loads beside the features,
        # not before the first frame. (calibrate's voice match uses audio.vad's speech mask, not
        # motion.offsets', which would pull in torch.)
        from lipdub.motion import calibrate  # noqa: F401

        MotionModel.load()
    return load_renderer(avatar, options)


def _require_a_frame(audio_path, seconds: float, fps: float) -> None:
    if seconds * fps < 1:
        raise InputError(f"{audio_path} holds {1000 * seconds:.0f} ms of audio, shorter than one "
                         f"video frame ({1000 / fps:.0f} ms at {fps:g} fps): nothing to show")


def generate(avatar, audio_path, out_path, options: GenerateOptions = GenerateOptions(),
             progress: ProgressFn | None = None) -> Path:
    """Write ``out_path``: the avatar (folder, ``Avatar`` or raw video) saying ``audio_path``.

    The video has ``round(audio_duration * fps)`` frames and carries the audio. Audio shorter
    than one video frame is refused (InputError); the written file is checked (video frames,
    audio, length within a frame of the audio's) before it is renamed into place.
    """
    from lipdub.audio import SAMPLE_RATE, load_audio
    from lipdub.compute_threads import single_compute_threads
    from lipdub.video import EncodeOptions, VideoWriter

    wav = load_audio(audio_path)  # first: bad audio fails before an avatar is prepared or trained
    seconds = len(wav) / SAMPLE_RATE
    if isinstance(avatar, (str, os.PathLike)) and not Path(avatar).is_dir():
        from lipdub.avatar import PrepareOptions

        # a raw video is prepared at the output rate (default PrepareOptions'): check before that
        _require_a_frame(audio_path, seconds, options.fps or PrepareOptions().fps)
    avatar = ensure_avatar(avatar, options, progress)
    template = template_for(avatar, options)
    fps = options.fps or template.fps
    _require_a_frame(audio_path, seconds, fps)
    width, height = output_size_for(template, options)
    enc = EncodeOptions(fps=fps, crf=options.crf, preset=options.preset)
    # The encoder starts first: ffmpeg's start-up and the audio probe run while the models load
    # (and an unwritable output fails before any of that work).
    # One BLAS and one OpenCV thread (compute_threads): their idle workers spinning took the
    # encoder's CPU.
    with single_compute_threads(), \
            VideoWriter(out_path, width, height, enc, audio=audio_path, expected_seconds=seconds) as writer:
        # The renderer and motion model load in a thread while the features are computed
        # (ONNX Runtime and NumPy release the GIL): the first frame comes sooner.
        with ThreadPoolExecutor(1, thread_name_prefix="lipdub-load") as loader:
            loading = loader.submit(_load_models, avatar, options)
            features = _features(wav, fps, options, progress)
            renderer = loading.result()
        del wav
        with Progress(features.n_frames, "generate", callback=progress) as bar:
            # Rendering runs in a thread a few frames ahead of the encoder's pipe (see background).
            for frame in background(_frames(avatar, template, features, options, renderer),
                                    depth=RENDER_AHEAD):
                writer.write(frame)
                bar.update(1)
    return Path(out_path)
