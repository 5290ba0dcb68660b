"""The `lipdub` command: a thin front end over the Python API.

Each subcommand parses its arguments, calls one library function and prints the result. User
errors (``LipdubError``) become one line on stderr and a non-zero exit; imports of heavy stages
happen inside the handlers so `lipdub --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lipdub import __version__
from lipdub.errors import LipdubError


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lipdub.avatar import PrepareOptions, prepare

    try:
        index, point = (args.face if isinstance(args.face, tuple) else (args.face, None))
        options = PrepareOptions(fps=args.fps, smooth=args.smooth, face_index=index,
                                 face_point=point, max_size=args.max_size)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    from lipdub.photo.prepare import PhotoOptions

    photo = PhotoOptions(seconds=args.idle_seconds, blink=not args.no_blink,
                         head_motion=args.head_motion, breathing=args.breathing)
    avatar = prepare(args.input, args.output, options, overwrite=args.overwrite, photo=photo)
    m = avatar.manifest
    print(f"prepared {avatar.path}: {avatar.n_frames} frames {avatar.width}x{avatar.height} "
          f"at {avatar.fps:g} fps in {m['prepare_seconds']:.1f} s ({m['prepare_fps']:.1f} frames/s)")
    if "shots" in m:
        print(f"  {m['shots']} shot(s), {m['people']} person(s); dubbing person {m['dubbed_person']} "
              f"in {m['frames_dubbed']} frames, the other {avatar.n_frames - m['frames_dubbed']} "
              "pass through untouched")
    return 0


def _face_choice(text: str):
    """`--face N` (N-th face from the left) or `--face X,Y` (the face at that point, fractions)."""
    try:
        if "," in text:
            x, y = (float(v) for v in text.split(","))
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError
            return (None, (x, y))
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected N (0-based, from the left) or X,Y (fractions 0..1), got {text!r}") from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from lipdub.metrics import compare_videos, format_report

    result = compare_videos(args.a, args.b, fps=args.fps, mouth=not args.no_mouth,
                            side_by_side=args.side_by_side, plot=args.plot)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(result))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lipdub.avatar import Avatar
    from lipdub.render.train import TrainOptions, train_renderer

    try:
        options = TrainOptions(minutes=args.minutes, epochs=args.epochs, size=args.size,
                               seed=args.seed, device=args.device, resume=args.resume)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    onnx_path = train_renderer(Avatar.load(args.avatar), options)
    print(f"trained renderer: {onnx_path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lipdub.render.train import export_renderer

    print(f"exported and validated: {export_renderer(args.avatar)}")
    return 0


#: GenerateOptions fields set from `generate` / `batch` arguments of the same name
_GENERATE_ARGS = ("template", "shapes", "mouth_scale", "motion_smooth", "fade_in", "fade_out",
                  "template_frames", "start_frame", "loop", "smooth_source", "keep_silence",
                  "max_size", "fps", "crf", "preset")


def _generate_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {name: getattr(args, name) for name in _GENERATE_ARGS}
    face = getattr(args, "face", None)
    if face is not None:  # --face N or X,Y: who to dub when the avatar is a raw video
        kwargs["face_index"], kwargs["face_point"] = face if isinstance(face, tuple) else (face, None)
    return kwargs


def _add_generate_options(p: argparse.ArgumentParser) -> None:
    """The GenerateOptions controls, shared by `generate` and `batch` (defaults = the library's)."""
    p.add_argument("--template", default=None, metavar="AVATAR_DIR",
                   help="other prepared footage of the same person to draw the frames from")
    p.add_argument("--shapes", choices=["audio", "template"], default="audio",
                   help="mouth shapes from the audio (default) or the template's own mouths")
    p.add_argument("--mouth-scale", type=float, default=1.0, metavar="X",
                   help="mouth-opening amplitude, 1 = the avatar's own range (default 1)")
    p.add_argument("--motion-smooth", type=float, default=1.0, metavar="K",
                   help="temporal smoothing of the mouth motion, Gaussian sigma in frames (default 1)")
    p.add_argument("--fade-in", type=int, default=0, metavar="N",
                   help="frames over which the dubbed mouth blends in from the template's own "
                        "(25 = 1 s at 25 fps; default 0)")
    p.add_argument("--fade-out", type=int, default=0, metavar="N",
                   help="frames over which it blends back to the template's own mouth at the end "
                        "(default 0)")
    p.add_argument("--template-frames", type=int, default=None, metavar="N",
                   help="use only the first N template frames (default: all)")
    p.add_argument("--start-frame", type=int, default=0, metavar="K",
                   help="start the walk over the template at its frame K (default 0)")
    p.add_argument("--loop", choices=["pingpong", "wrap"], default="pingpong",
                   help="past the template's last frame: walk back (pingpong, default) or "
                        "jump to the first (wrap)")
    p.add_argument("--smooth-source", type=int, default=0, metavar="K",
                   help="smooth the template's face landmarks over K frames (steadier mouth on "
                        "jittery footage; default 0 = off)")
    p.add_argument("--keep-silence", action="store_true",
                   help="leave the template's own mouth where the audio is silent (voice activity)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="downscale the output so its longer side is PX (default: the avatar's size)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate (default: the avatar's)")
    p.add_argument("--face", type=_face_choice, default=None, metavar="N|X,Y",
                   help="when the avatar is a raw video: the person to dub, as for `lipdub prepare "
                        "--face` (default: the largest face)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better (default 18)")
    p.add_argument("--preset", default="veryfast", help="x264 preset (default veryfast)")


def _cmd_generate(args: argparse.Namespace) -> int:
    from lipdub.pipeline import GenerateOptions, generate

    try:
        options = GenerateOptions(**_generate_kwargs(args))
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    out = generate(args.avatar, args.audio, args.output, options)
    print(f"wrote {out}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from lipdub.batch import items_from_dir, load_manifest, run_batch, run_batch_broker
    from lipdub.pipeline import GenerateOptions

    defaults = _generate_kwargs(args)
    try:
        GenerateOptions(**defaults)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    if args.broker and not args.storage:
        raise LipdubError("--broker needs --storage DIR: the folder the workers mount")
    if args.manifest:
        if args.avatar or args.audio_dir or args.out_dir:
            raise LipdubError("give either MANIFEST or --avatar/--audio-dir/--out-dir, not both")
        items = load_manifest(args.manifest)
    elif args.avatar and args.audio_dir and args.out_dir:
        items = items_from_dir(args.avatar, args.audio_dir, args.out_dir)
    else:
        raise LipdubError("give a MANIFEST, or all of --avatar, --audio-dir and --out-dir")
    if not items:
        print("nothing to do: no items")
        return 0
    if args.broker:
        report = run_batch_broker(items, args.broker, args.storage, options=defaults,
                                  timeout=args.timeout)
    else:
        report = run_batch(items, jobs=args.jobs, options=defaults)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from lipdub.demo import run_demo

    summary = run_demo(args.output)
    print(f"wrote {summary['path']}: {summary['frames']} frames in {summary['seconds']:.1f} s")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from lipdub.doctor import format_checks, run_checks

    checks = run_checks()
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from lipdub.server import ServerConfig, serve

    try:
        config = ServerConfig(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                              workers=args.workers,
                              api_key=args.api_key or os.environ.get("LIPDUB_API_KEY") or None,
                              max_upload_bytes=args.max_upload_mb * 1024 * 1024,
                              train_on_prepare=args.train_minutes is not None,
                              train_minutes=args.train_minutes, keep_days=args.keep_days,
                              max_data_bytes=args.max_data_mb * 1024 * 1024 if args.max_data_mb else None,
                              min_free_bytes=args.min_free_mb * 1024 * 1024,
                              shutdown_grace=args.shutdown_grace)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    if config.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"lipdub: warning: listening on {args.host} without --api-key: anyone who can reach "
              "this port can upload and run jobs", file=sys.stderr)
    if args.broker:
        from lipdub.scale.client import serve as serve_scaled

        serve_scaled(config, args.broker, max_attempts=args.max_attempts)
    else:
        serve(config)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from lipdub.scale.worker import WorkerConfig, run_worker

    try:
        config = WorkerConfig(broker=args.broker, storage=Path(args.storage),
                              cache_dir=Path(args.cache_dir), concurrency=args.concurrency,
                              loglevel=args.log_level,
                              cache_max_bytes=args.cache_max_mb * 1024 * 1024 if args.cache_max_mb else None)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    run_worker(config)
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from lipdub.audio import load_audio
    from lipdub.stream import Recorder, StreamOptions, Streamer, paced_chunks

    try:
        options = StreamOptions(lookahead=args.lookahead, whisper_window=args.whisper_window,
                                mouth_scale=args.mouth_scale,
                                max_latency=(args.max_latency or None) if args.realtime else None)
    except ValueError as exc:
        raise LipdubError(f"invalid option: {exc}") from None
    if not 10 <= args.chunk_ms <= 5000:
        raise LipdubError("invalid option: --chunk-ms must be in [10, 5000]")
    wav = load_audio(args.audio)
    from lipdub.pipeline import ensure_avatar

    engine = Streamer(ensure_avatar(args.avatar), options)
    writer = sound = None
    if args.output:
        import tempfile

        from lipdub.video import EncodeOptions, VideoWriter

        av = engine.avatar
        sound = tempfile.NamedTemporaryFile(suffix=".wav", delete=False)
        sound.close()
        _write_wav(sound.name, wav)
        # Encoded from its own thread (Recorder): the recording never holds up the stream.
        writer = Recorder(VideoWriter(args.output, av.width, av.height,
                                      EncodeOptions(fps=av.fps, preset="ultrafast", crf=23),
                                      audio=sound.name, expected_seconds=len(wav) / 16000))
    start = time.monotonic()
    latencies, first = [], None
    n = 0
    try:
        for chunk_frames in _stream_batches(engine, paced_chunks(wav, args.chunk_ms / 1000.0,
                                                                  realtime=args.realtime, start=start)):
            for f in chunk_frames:
                if first is None:
                    first = f.produced - start
                # from the instant the audio of t_i was captured (real-time pace) to its frame
                latencies.append(f.produced - (start + f.time) if args.realtime else f.latency)
                if writer is not None:
                    writer.write(f.image)
                n += 1
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if sound is not None:
            os.unlink(sound.name)
    lat = np.asarray(latencies) * 1000
    wall = time.monotonic() - start
    stats = {"frames": n, "audio_seconds": round(len(wav) / 16000, 3), "wall_seconds": round(wall, 3),
             "realtime": bool(args.realtime), "first_frame_ms": round(1000 * (first or 0), 1),
             "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                            "p95": round(float(np.percentile(lat, 95)), 1),
                            "p99": round(float(np.percentile(lat, 99)), 1),
                            "max": round(float(lat.max()), 1)} if n else None,
             "repeated": engine.stats["repeated"], "output": args.output}
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        lm = stats["latency_ms"] or {}
        print(f"streamed {n} frames of {stats['audio_seconds']} s audio in {stats['wall_seconds']} s; "
              f"first frame {stats['first_frame_ms']} ms; latency p50 {lm.get('p50')} ms, "
              f"p95 {lm.get('p95')} ms, p99 {lm.get('p99')} ms; "
              f"{stats['repeated']} late frames repeated the previous image"
              + (f"; wrote {args.output}" if args.output else ""))
    return 0


def _stream_batches(engine, chunks):
    for chunk in chunks:
        yield engine.feed(chunk)
    yield engine.finish()


def _write_wav(path: str, wav) -> None:
    import wave

    import numpy as np

    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipdub",
        description="Make the person in a video or photo say any speech audio (offline, CPU).")
    parser.add_argument("--version", action="version", version=f"lipdub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("prepare", help="prepare an avatar from a video or photo",
                       description="Track the face in every frame of INPUT and store an avatar "
                                   "(frames, landmarks, crops, audio features) in AVATAR_DIR.")
    p.add_argument("input", help="video or photo of one person")
    p.add_argument("-o", "--output", required=True, metavar="AVATAR_DIR", help="avatar folder to write")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the avatar (default 25)")
    p.add_argument("--smooth", type=int, default=5,
                   help="landmark smoothing window in frames, centred; 1 = off (default 5)")
    p.add_argument("--face", type=_face_choice, default=None, metavar="N|X,Y",
                   help="the person to dub: the N-th face from the left (0-based), or the face at "
                        "X,Y (fractions of the frame, e.g. 0.7,0.4); default: the largest. Frames "
                        "without that person's face pass through untouched")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="downscale so the longer side is at most PX")
    p.add_argument("--overwrite", action="store_true", help="replace an existing avatar folder")
    photo = p.add_argument_group("photo input", "a photo becomes a looping idle-motion template")
    photo.add_argument("--idle-seconds", type=float, default=10.0, metavar="S",
                       help="length of the idle template (default 10; 0 = one still frame)")
    photo.add_argument("--no-blink", action="store_true", help="no blinks")
    photo.add_argument("--head-motion", type=float, default=1.0, metavar="X",
                       help="scale of the slow head motion (default 1; 0 = off)")
    photo.add_argument("--breathing", type=float, default=1.0, metavar="X",
                       help="scale of the shoulders' breathing motion (default 1; 0 = off)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("compare", help="compare two videos (pixels and mouth motion)",
                       description="PSNR, SSIM, pixel differences and mouth-aperture agreement of A and B.")
    p.add_argument("a", help="first video (the reference)")
    p.add_argument("b", help="second video")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--fps", type=float, default=25.0, help="rate both are sampled at (default 25)")
    p.add_argument("--no-mouth", action="store_true", help="skip face tracking (pixel metrics only)")
    p.add_argument("--side-by-side", metavar="OUT.mp4", default=None, help="write A|B side by side")
    p.add_argument("--plot", metavar="P.png", default=None, help="plot both mouth-aperture curves")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("train", help="optional: train an avatar's U-Net mouth refinement",
                       description="Optional refinement: train a small U-Net on the avatar's own "
                                   "frames to correct the warped real mouth, and write a validated "
                                   "ONNX model into AVATAR_DIR (generate then uses it). Without it "
                                   "generate works at once from the mouth bank made by prepare.")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a folder made by `lipdub prepare`")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None, help="training time budget (default 15)")
    budget.add_argument("--epochs", type=float, default=None, help="passes over the frames instead")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128; up to 320)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="re-export and validate an avatar's ONNX renderer",
                       description="Export AVATAR_DIR's trained renderer to ONNX again and check it "
                                   "against PyTorch on real crops (PSNR >= 40 dB).")
    p.add_argument("avatar", metavar="AVATAR_DIR", help="a trained avatar folder")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("generate", help="dub speech audio onto an avatar",
                       description="Write OUT.mp4: the avatar (a prepared folder, or a raw video, "
                                   "prepared once and cached; no training) saying the audio. Audio "
                                   "shorter than one video frame (40 ms at 25 fps) is refused with "
                                   "an error; a WAV cut short (its data ends before its header "
                                   "says) is dubbed as far as it goes, with a warning. The video is "
                                   "checked before it replaces OUT.mp4 (video frames, audio, the "
                                   "audio's length within one frame): otherwise nothing is written "
                                   "and the exit status is non-zero.")
    p.add_argument("--avatar", required=True, help="avatar folder, or a video to prepare first")
    p.add_argument("--audio", required=True, help="speech audio (any ffmpeg-readable file)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    _add_generate_options(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("batch", help="dub many audio files (manifest or folder), resumable",
                       description="Run every item of MANIFEST (CSV or JSON rows: avatar, audio, "
                                   "output, options as a JSON object), or every audio file in "
                                   "--audio-dir for --avatar. Outputs that already exist and are "
                                   "complete are skipped, so a second run resumes; failed items are "
                                   "listed at the end and make the exit status 1. The generate "
                                   "options below apply to every item (an item's own win).")
    p.add_argument("manifest", nargs="?", default=None, metavar="MANIFEST",
                   help="CSV (header avatar,audio,output[,options]) or JSON list of items")
    p.add_argument("--avatar", default=None, help="with --audio-dir: the avatar for every file")
    p.add_argument("--audio-dir", default=None, metavar="DIR", help="dub every audio file in DIR")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="write DIR/<audio name>.mp4")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="items run at the same time, each in its own process (default 1)")
    p.add_argument("--broker", default=None, metavar="URL",
                   help="send the items to `lipdub worker`s through this Redis instead "
                        "(redis://HOST:PORT/0); needs --storage")
    p.add_argument("--storage", default=None, metavar="DIR",
                   help="with --broker: the shared folder the workers mount as --storage")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="with --broker: give up waiting after S seconds")
    _add_generate_options(p)
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser("demo", help="write a demo video: a photo that talks (no input needed)",
                       description="The astronaut photo shipped by scikit-image says a sentence "
                                   "synthesised with espeak-ng: a photo avatar, prepared and dubbed.")
    p.add_argument("-o", "--output", default="demo.mp4", metavar="OUT.mp4",
                   help="video to write (default demo.mp4)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("doctor", help="check the installation and bundled models",
                       description="Report versions of ffmpeg, mediapipe, onnxruntime and torch, check "
                                   "that the bundled models load, and say how to fix what is missing.")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("serve", help="run the web service and browser page",
                       description="Serve the HTTP API (OpenAPI at /docs) and the browser page at /, "
                                   "with a job queue kept in DIR that survives restarts.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--data-dir", default="lipdub-data", metavar="DIR",
                   help="jobs database, uploads, avatars and results (default ./lipdub-data)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="jobs run at the same time, each in its own process (default 1)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require KEY (X-API-Key or Authorization: Bearer) on every route but "
                        "/health and the page; default $LIPDUB_API_KEY, else no key")
    p.add_argument("--max-upload-mb", type=int, default=500, metavar="MB",
                   help="largest request body accepted (default 500)")
    p.add_argument("--train-minutes", type=float, default=None, metavar="MIN",
                   help="also train the optional U-Net refinement of each new avatar for MIN "
                        "minutes (default: no training; an avatar is ready once prepared)")
    p.add_argument("--broker", default=os.environ.get("LIPDUB_BROKER"), metavar="URL",
                   help="run jobs on `lipdub worker`s through this Redis (redis://HOST:PORT/0) "
                        "instead of in this process; --data-dir must then be a folder every "
                        "worker mounts (default $LIPDUB_BROKER, else in-process workers)")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="with --broker: a job whose worker dies N times is failed (default 3)")
    p.add_argument("--keep-days", type=float, default=None, metavar="D",
                   help="delete the results and uploads of jobs that ended D days ago, and their "
                        "records (default: keep until deleted; avatars always stay)")
    p.add_argument("--max-data-mb", type=int, default=None, metavar="MB",
                   help="cap on the data folder: past it the longest-finished jobs are removed "
                        "first, never a running one (default: no cap)")
    p.add_argument("--min-free-mb", type=int, default=64, metavar="MB",
                   help="refuse uploads (507) when the disk has less free space (default 64)")
    p.add_argument("--shutdown-grace", type=float, default=10.0, metavar="S",
                   help="on SIGTERM, running jobs get S seconds to finish before they are "
                        "re-queued for the next start (default 10)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("worker", help="run jobs from a broker (scale-out on many machines)",
                       description="Take jobs queued by `lipdub serve --broker` (or `lipdub batch "
                                   "--broker`) from Redis and run them, N at a time.")
    p.add_argument("--broker", default=os.environ.get("LIPDUB_BROKER"),
                   required=not os.environ.get("LIPDUB_BROKER"), metavar="URL",
                   help="the Redis the server uses, e.g. redis://10.0.0.5:6379/0 "
                        "(default $LIPDUB_BROKER)")
    p.add_argument("--concurrency", "-c", type=int, default=1, metavar="N",
                   help="jobs run at the same time, each in its own process (default 1; at most "
                        "the core count)")
    p.add_argument("--storage", "--data-dir", dest="storage", default="lipdub-data", metavar="DIR",
                   help="the server's --data-dir as mounted on this machine (default ./lipdub-data)")
    p.add_argument("--cache-dir", default="lipdub-worker", metavar="DIR",
                   help="local disk for cached avatars and job scratch (default ./lipdub-worker)")
    p.add_argument("--cache-max-mb", type=int, default=None, metavar="MB",
                   help="LRU cap on the cached avatars: the least recently used go first, never "
                        "one a running job uses (default: no cap)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="log detail (default warning)")
    p.set_defaults(func=_cmd_worker)
    p = sub.add_parser("stream", help="stream audio into an avatar as if live (latency test)",
                       description="Feed AUDIO to the real-time streaming engine in chunks (at "
                                   "real-time pace with --realtime), print latency statistics, "
                                   "and optionally record what a viewer sees to OUT.mp4.")
    p.add_argument("--avatar", required=True, help="avatar folder, or a video to prepare+train first")
    p.add_argument("--audio", required=True, help="speech audio (any ffmpeg-readable file)")
    p.add_argument("--realtime", action="store_true", help="feed chunks at real-time pace")
    p.add_argument("--chunk-ms", type=int, default=20, help="chunk size in ms (default 20)")
    p.add_argument("--lookahead", type=float, default=0.2,
                   help="seconds of audio past a frame before it is made (default 0.2)")
    p.add_argument("--whisper-window", type=float, default=3.0,
                   help="seconds of trailing audio the Whisper encoder sees (default 3)")
    p.add_argument("--mouth-scale", type=float, default=1.0, help="mouth-opening amplitude (default 1)")
    p.add_argument("--max-latency", type=float, default=0.4, metavar="S",
                   help="with --realtime: a frame not ready within S s of its audio repeats the "
                        "previous image instead, so the stream never falls behind (default 0.4; 0: off)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.mp4", help="record frames + audio")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.set_defaults(func=_cmd_stream)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except LipdubError as exc:
        print(f"lipdub: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lipdub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
