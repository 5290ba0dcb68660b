"""`lipdub stream`: the real-time engine fed from a file, with latency statistics."""

from __future__ import annotations

import argparse
import json
import os

from lipdub.errors import LipdubError


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


def add_parsers(sub) -> None:
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
