"""End-to-end generation: speech audio + a trained avatar -> a lip-synced video.

Stages, each working on a chunk of consecutive output frames so a streaming front end can join
them differently:

1. ``target_chunks``: which template frame each output frame is drawn over (ping-pong walk) and
   the mouth it should show (the motion model's landmarks, or the template's own with
   ``shapes="template"``).
2. ``template_frames``: those template frames, decoded from the avatar's JPEGs a few ahead, so
   memory does not grow with the output length.
3. ``render_frames``: renderer (onnxruntime, batched) and paste-back.
4. ``generate``: streaming H.264 encode with the speech muxed in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from lipdub.composite import paste
from lipdub.errors import InputError
from lipdub.progress import Progress, ProgressFn
from lipdub.render.runtime import Renderer
from lipdub.render.train import TrainOptions


@dataclass(frozen=True)
class GenerateOptions:
    template: object = None          # another prepared avatar (folder or Avatar, same person)
    shapes: str = "audio"            # "audio": motion model; "template": the frames' own mouths
    mouth_scale: float = 1.0         # mouth-opening amplitude (1 = the avatar's own range)
    motion_smooth: float = 1.0       # temporal smoothing of the motion (Gaussian sigma, frames)
    chunk: int = 32                  # output frames per stage chunk
    batch_size: int = 8              # renderer batch (onnxruntime)
    threads: int | None = None       # onnxruntime threads (default 1: the encoder needs a core)
    crf: int = 18
    preset: str = "veryfast"
    train: TrainOptions = field(default_factory=TrainOptions)  # when `avatar` is a raw video
    cache_dir: str | None = None     # raw-video avatars (default $LIPDUB_CACHE or ~/.cache/lipdub)
    use_network: bool = True         # False: paste the warped real mouth only (ablation)

    def __post_init__(self):
        if self.shapes not in ("audio", "template"):
            raise ValueError(f"shapes must be 'audio' or 'template', got {self.shapes!r}")
        if self.chunk < 1 or self.batch_size < 1:
            raise ValueError("chunk and batch_size must be positive")


def template_order(n_out: int, n_template: int) -> np.ndarray:
    """Template frame under each output frame: 0, 1, ..., M-1, M-2, ..., 1, 0, 1, ... (ping-pong)."""
    from lipdub.motion.calibrate import template_indices

    return template_indices(n_out, n_template)


def template_frames(avatar, order: np.ndarray) -> Iterator[np.ndarray]:
    """Writable template frames in walk order. A prepared avatar stores JPEG frames, so any order
    is cheap (decoded a few ahead in threads); nothing is held beyond that read-ahead."""
    try:
        yield from avatar.iter_frames(order)
    except TypeError:  # an avatar-like object without indexed iteration
        for i in order:
            yield np.array(avatar.frame(int(i)))


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
                  motion_chunk: int = 250) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(template frame indices (n,), target landmarks (n, 478, 3)) per run of output frames."""
    order = template_order(n_out, template.n_frames)
    if options.shapes == "template":
        for s in range(0, n_out, motion_chunk):
            idx = order[s:s + motion_chunk]
            yield idx, template.landmarks[idx]
        return
    from lipdub.motion import MotionModel, audio_to_motion, calibrate

    model = MotionModel.load()
    cal = calibrate(np.asarray(template.landmarks), model)
    ctx = model.receptive_field + 8  # a little beyond the receptive field for the silence gate
    for s in range(0, n_out, motion_chunk):
        e = min(n_out, s + motion_chunk)
        a, b = max(0, s - ctx), min(n_out, e + ctx)
        feats = _features_chunk(features, a, b)
        lms = audio_to_motion(feats, template, options.mouth_scale, options.motion_smooth,
                              frame_indices=order[s:e], left=s - a, right=b - e, model=model,
                              calibration=cal)
        yield order[s:e], lms


def render_frames(renderer: Renderer, template, order_and_targets, options: GenerateOptions,
                  order: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Output frames from (template indices, target landmarks) runs: render + paste, by chunks.

    ``order`` (all template indices, in output order) lets frame decoding run ahead across runs."""
    source = template_frames(template, order) if order is not None else None
    renderer.reset()
    for idx_run, lm_run in order_and_targets:
        run_frames = source if source is not None else template_frames(template, idx_run)
        for s in range(0, len(idx_run), options.chunk):
            idx = idx_run[s:s + options.chunk]
            tmpl = [next(run_frames) for _ in idx]
            out = renderer.render_chunk(tmpl, template.boxes[idx], template.landmarks[idx],
                                        lm_run[s:s + options.chunk])
            for j, frame in enumerate(tmpl):
                yield paste(frame, out.crops[j], out.alphas[j], template.boxes[idx[j]],
                            out.templates[j], inplace=True)


def frames(avatar, audio, options: GenerateOptions = GenerateOptions(),
           progress: ProgressFn | None = None) -> Iterator[np.ndarray]:
    """Output frames (RGB uint8) of ``avatar`` saying ``audio`` (a path, 16 kHz array or
    ``AudioFeatures``), one per ``1/fps`` of audio, streamed."""
    from lipdub.audio import AudioFeatures, extract_features

    avatar = ensure_avatar(avatar, options, progress)
    template = _load_avatar(options.template) if options.template else avatar
    renderer = Renderer.load(avatar.path, threads=options.threads, batch_size=options.batch_size,
                             use_network=options.use_network)
    if isinstance(audio, AudioFeatures):
        features = audio
    else:
        need = options.shapes == "audio"
        features = extract_features(audio, fps=template.fps, whisper=need, mel=need, vad=need,
                                    progress=progress)
    n_out = features.n_frames
    runs = target_chunks(template, features, n_out, options)
    yield from render_frames(renderer, template, runs, options,
                             order=template_order(n_out, template.n_frames))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root(options: GenerateOptions) -> Path:
    root = options.cache_dir or os.environ.get("LIPDUB_CACHE") or Path.home() / ".cache" / "lipdub"
    return Path(root)


def ensure_avatar(video, options: GenerateOptions = GenerateOptions(),
                  progress: ProgressFn | None = None):
    """An avatar folder with a trained renderer for ``video``: a prepared avatar is used as is
    (trained if it has no renderer yet); a raw video is prepared and trained once, cached under
    ``cache_root()/<sha256 of the file>``."""
    from lipdub.render.export import ONNX_FILE
    from lipdub.render.train import train_renderer

    if hasattr(video, "landmarks"):
        avatar = video
    else:
        from lipdub.avatar import Avatar, PrepareOptions, prepare

        path = Path(video)
        if not path.exists():
            raise InputError(f"no such file or folder: {path}")
        if path.is_dir():
            avatar = Avatar.load(path)
        else:
            folder = cache_root(options) / file_sha256(path)[:32]
            try:
                avatar = Avatar.load(folder)
            except Exception:  # not prepared yet, or a broken earlier attempt: prepare afresh
                avatar = prepare(path, folder, PrepareOptions(), progress, overwrite=True)
    if not (Path(avatar.path) / ONNX_FILE).exists():
        train_renderer(avatar, options.train, progress)
    return avatar


def generate(avatar, audio_path, out_path, options: GenerateOptions = GenerateOptions(),
             progress: ProgressFn | None = None) -> Path:
    """Write ``out_path``: the avatar (folder, ``Avatar`` or raw video) saying ``audio_path``.

    The video has ``round(audio_duration * fps)`` frames and carries the audio.
    """
    from lipdub.audio import extract_features, load_audio
    from lipdub.video import EncodeOptions, VideoWriter

    avatar = ensure_avatar(avatar, options, progress)
    template = _load_avatar(options.template) if options.template else avatar
    need = options.shapes == "audio"
    wav = load_audio(audio_path)
    features = extract_features(wav, fps=template.fps, whisper=need, mel=need, vad=need,
                                progress=progress)
    del wav
    enc = EncodeOptions(fps=template.fps, crf=options.crf, preset=options.preset)
    with Progress(features.n_frames, "generate", callback=progress) as bar, \
            VideoWriter(out_path, template.width, template.height, enc, audio=audio_path) as writer:
        for frame in frames(avatar, features, options):
            writer.write(frame)
            bar.update(1)
    return Path(out_path)
