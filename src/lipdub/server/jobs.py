"""The job functions the server runs: prepare an avatar (optionally train its U-Net), generate.

Each is ``fn(ctx: JobContext) -> dict`` (see lipdub.jobstore.runner). They import the engine lazily:
a job runs in a fresh child process, and a stage that is not installed in this build fails its
job with a message that says so instead of breaking the server.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
from typing import Any

from lipdub.errors import InputError, MissingDependencyError
from lipdub.jobstore.runner import JobContext


def _engine(module: str, *names: str, what: str):
    """Import names from an engine module, or explain which part of lipdub is missing."""
    try:
        mod = importlib.import_module(module)
        return [getattr(mod, n) for n in names]
    except (ImportError, AttributeError) as exc:
        raise MissingDependencyError(f"{what} is not available in this lipdub build "
                                     f"({module}: {exc})") from None


def option_fields(module: str, cls: str) -> dict[str, Any] | None:
    """Field names and defaults of an engine options dataclass; None when it is absent."""
    try:
        klass = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        return None
    out = {}
    for f in dataclasses.fields(klass):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            value = None
        out[f.name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return out


#: Generate options a client may set, and their allowed values (a tuple of choices, or a
#: [low, high] range). The others (template, cache_dir, train, threads...) name server paths or
#: control server resources, so they stay the server's business.
PUBLIC_GENERATE_OPTIONS: dict[str, tuple] = {
    "shapes": ("audio", "template"),
    "mouth_scale": (0.0, 3.0),
    "motion_smooth": (0.0, 10.0),
    "crf": (0, 51),
    "preset": ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"),
    "fade_in": (0, 250),
    "fade_out": (0, 250),
    "template_frames": (1, 1_000_000),
    "start_frame": (0, 1_000_000),
    "loop": ("pingpong", "wrap"),
    "smooth_source": (0, 25),
    "keep_silence": (False, True),
    "max_size": (64, 4096),
}


def _is_range(rule: tuple) -> bool:
    """A (min, max) numeric rule; (False, True) is a flag, not the range 0..1."""
    return rule != (False, True) and all(isinstance(v, (int, float)) for v in rule)


def public_generate_options() -> dict[str, dict]:
    """What /config shows: each settable option with its default and allowed values."""
    defaults = option_fields("lipdub.pipeline", "GenerateOptions") or {}
    out = {}
    for name, rule in PUBLIC_GENERATE_OPTIONS.items():
        numeric = _is_range(rule)
        out[name] = {"default": defaults.get(name),
                     **({"min": rule[0], "max": rule[1]} if numeric else {"choices": list(rule)})}
    return out


def check_generate_options(options: dict[str, Any]) -> str | None:
    """Why these client options are refused, or None."""
    unknown = sorted(set(options) - set(PUBLIC_GENERATE_OPTIONS))
    if unknown:
        return (f"unknown or server-only option(s) {', '.join(unknown)}; "
                f"settable: {', '.join(PUBLIC_GENERATE_OPTIONS)}")
    for name, value in options.items():
        rule = PUBLIC_GENERATE_OPTIONS[name]
        if rule == (False, True):
            if not isinstance(value, bool):
                return f"option {name} must be true or false"
        elif _is_range(rule):
            integral = all(isinstance(v, int) for v in rule)
            ok_type = isinstance(value, int if integral else (int, float)) and not isinstance(value, bool)
            if not ok_type or not rule[0] <= value <= rule[1]:
                kind = "an integer" if integral else "a number"
                return f"option {name} must be {kind} in {rule[0]}..{rule[1]}"
        elif value not in rule:
            return f"option {name} must be one of {', '.join(rule)}"
    try:
        GenerateOptions = getattr(importlib.import_module("lipdub.pipeline"), "GenerateOptions")
    except (ImportError, AttributeError):
        return None  # the renderer is missing; the job will say so
    try:
        GenerateOptions(**options)
    except (TypeError, ValueError) as exc:
        return f"invalid options: {exc}"
    return None


def renderer_trainable() -> bool:
    try:
        importlib.import_module("lipdub.render.train")
    except ImportError:
        return False
    return True


def prepare_job(ctx: JobContext) -> dict:
    """Inputs: source (upload), avatar_dir. Options: PrepareOptions fields, plus `train`."""
    PrepareOptions, prepare = _engine("lipdub.avatar", "PrepareOptions", "prepare",
                                      what="avatar preparation")
    options = dict(ctx.options)
    train = bool(options.pop("train", False))
    train_minutes = options.pop("train_minutes", None)
    out_dir = ctx.path(ctx.inputs["avatar_dir"])
    avatar = prepare(ctx.path(ctx.inputs["source"]), out_dir, PrepareOptions(**options),
                     progress=ctx.progress, overwrite=True)
    result = {"frames": int(avatar.n_frames), "width": int(avatar.width),
              "height": int(avatar.height), "fps": float(avatar.fps), "trained": False}
    if train and renderer_trainable():
        TrainOptions, train_renderer = _engine("lipdub.render.train", "TrainOptions",
                                               "train_renderer", what="renderer training")
        train_renderer(avatar, TrainOptions(minutes=train_minutes), progress=ctx.progress)
        result["trained"] = True
    return result


def generate_job(ctx: JobContext) -> dict:
    """Inputs: avatar_dir, audio (upload). Options: public GenerateOptions fields (checked by
    the API). Writes result.mp4. No training: an avatar is ready once prepared."""
    GenerateOptions, generate = _engine("lipdub.pipeline", "GenerateOptions", "generate",
                                        what="video generation (the renderer)")
    _engine("lipdub.avatar", "Avatar", what="avatar loading")  # generate() needs it too
    avatar_dir = ctx.path(ctx.inputs["avatar_dir"])
    if not avatar_dir.is_dir():
        raise InputError("the avatar was deleted before this job ran")
    out = ctx.work_dir / "result.mp4"
    generate(avatar_dir, ctx.path(ctx.inputs["audio"]), out, GenerateOptions(**ctx.options),
             progress=ctx.progress)
    if not out.is_file():
        raise InputError("generation finished without writing a video")
    return {"output": str(out.relative_to(ctx.data_dir))}


def default_jobs() -> dict:
    return {"prepare": prepare_job, "generate": generate_job}


def remove_job_files(data_dir, job_id: str) -> None:
    shutil.rmtree(data_dir / "jobs" / job_id, ignore_errors=True)
