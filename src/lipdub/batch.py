"""`lipdub batch`: dub many audio files, locally in parallel processes or on Celery workers.

Items come from a manifest (CSV or JSON rows ``avatar, audio, output, options``) or from a folder
of audio files for one avatar. A run

- skips items whose output already exists and passes the written-video check (video frames,
  audio, the audio's length within a frame), so an interrupted batch resumes where it stopped;
- prepares/trains each distinct avatar once, before the items that need it run in parallel;
- keeps going past a failed item and returns every failure with its error.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lipdub.errors import InputError

AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".wma", ".webm", ".mp4")


@dataclass(frozen=True)
class BatchItem:
    avatar: str                      # avatar folder, or a raw video (prepared + trained once)
    audio: str
    output: str
    options: dict = field(default_factory=dict)  # GenerateOptions fields for this item


@dataclass
class ItemResult:
    item: BatchItem
    status: str                      # "done" | "skipped" (already complete) | "failed"
    error: str | None = None
    seconds: float = 0.0


@dataclass
class BatchReport:
    results: list[ItemResult]

    def _with(self, status: str) -> list[ItemResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[ItemResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[ItemResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ItemResult]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.done)} done, {len(self.skipped)} already complete, "
                 f"{len(self.failed)} failed (of {len(self.results)})"]
        for r in self.failed:
            lines.append(f"  FAILED {r.item.audio} -> {r.item.output}: {r.error}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ items

def _parse_options(value) -> dict:
    if value in (None, ""):
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"options must be a JSON object, got {value!r} ({exc})") from None
    if not isinstance(parsed, dict):
        raise InputError(f"options must be a JSON object, got {value!r}")
    return parsed


def _resolve(base: Path, value: str) -> str:
    path = Path(os.path.expanduser(str(value)))
    return str(path if path.is_absolute() else base / path)


def load_manifest(path: str | os.PathLike) -> list[BatchItem]:
    """Items of a CSV (header ``avatar,audio,output[,options]``; ``options`` a JSON object) or
    JSON manifest (a list of objects, or ``{"items": [...]}``). Relative paths are relative to
    the manifest's folder. Other CSV columns named like a GenerateOptions field become options."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such manifest: {path}")
    base = path.parent
    text = path.read_text()
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON: {exc}") from None
        if isinstance(rows, dict):
            rows = rows.get("items")
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a list of items or {{\"items\": [...]}}")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    items = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: item {n} is not an object")
        row = {str(k).strip(): v for k, v in row.items() if k is not None}
        missing = [k for k in ("avatar", "audio", "output") if not row.get(k)]
        if missing:
            raise InputError(f"{path}: item {n} lacks {', '.join(missing)}")
        options = _parse_options(row.pop("options", None))
        for key in list(row):
            if key not in ("avatar", "audio", "output") and row[key] not in (None, ""):
                options.setdefault(key, _scalar(row[key]))
        items.append(BatchItem(_resolve(base, row["avatar"]), _resolve(base, row["audio"]),
                               _resolve(base, row["output"]), options))
    return items


def _scalar(value):
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def items_from_dir(avatar: str | os.PathLike, audio_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, options: dict | None = None) -> list[BatchItem]:
    """One item per audio file in ``audio_dir`` (sorted), writing ``out_dir/<name>.mp4``."""
    audio_dir, out_dir = Path(audio_dir), Path(out_dir)
    if not audio_dir.is_dir():
        raise InputError(f"no such folder: {audio_dir}")
    files = sorted(p for p in audio_dir.iterdir()
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and ".partial" not in p.name)
    return [BatchItem(str(avatar), str(p), str(out_dir / f"{p.stem}.mp4"), dict(options or {}))
            for p in files]


# ------------------------------------------------------------------------------------ running

def is_complete(output: str | os.PathLike, audio: str | os.PathLike) -> bool:
    """Whether ``output`` exists and is a finished dub of ``audio``: the check every written video
    passes (``lipdub.video.verify_output``: video frames, audio, the audio's length within a
    frame)."""
    from lipdub.errors import LipdubError
    from lipdub.video import probe, verify_output

    if not Path(output).is_file():
        return False
    try:
        src = probe(audio)
        seconds = src.audio_duration or src.duration
        verify_output(output, seconds, probe(output).fps or 25.0)
    except (LipdubError, OSError):
        return False
    return seconds > 0


def _options(defaults: dict, item: BatchItem):
    from lipdub.pipeline import GenerateOptions

    merged = {**defaults, **item.options}
    try:
        return GenerateOptions(**merged)
    except TypeError as exc:
        raise InputError(f"unknown option in {sorted(merged)}: {exc}") from None
    except ValueError as exc:
        raise InputError(f"invalid option: {exc}") from None


def _run_one(item: BatchItem, avatar: str, defaults: dict) -> tuple[str | None, float]:
    """Generate one item (in a worker process); returns (error or None, seconds)."""
    from lipdub.pipeline import generate

    start = time.monotonic()
    try:
        Path(item.output).parent.mkdir(parents=True, exist_ok=True)
        generate(avatar, item.audio, item.output, _options(defaults, item))
    except Exception as exc:  # noqa: BLE001 - reported per item, the batch goes on
        return f"{type(exc).__name__}: {exc}" if not str(exc).startswith(type(exc).__name__) \
            else str(exc), time.monotonic() - start
    return None, time.monotonic() - start


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Tally:
    """Item results in item order, each reported as it ends; outputs that already exist and
    probe complete are settled ("skipped") up front, the rest are left in ``todo``."""

    def __init__(self, items: list[BatchItem],
                 on_result: Callable[[ItemResult, int, int], None] | None):
        self._report = on_result or (lambda r, k, n: _say(_progress_line(r, k, n)))
        self.results: list[ItemResult | None] = [None] * len(items)
        self.finished = 0
        self.todo: list[int] = []
        for i, item in enumerate(items):
            if is_complete(item.output, item.audio):
                self.finish(i, ItemResult(item, "skipped"))
            else:
                self.todo.append(i)

    def finish(self, i: int, result: ItemResult) -> None:
        self.results[i] = result
        self.finished += 1
        self._report(result, self.finished, len(self.results))

    def report(self) -> BatchReport:
        return BatchReport([r for r in self.results if r is not None])


def run_batch(items: list[BatchItem], jobs: int = 1, options: dict | None = None,
              on_result: Callable[[ItemResult, int, int], None] | None = None,
              cache_dir: str | None = None) -> BatchReport:
    """Run every item (``jobs`` at a time, in separate processes); never raises for one item.

    ``options``: GenerateOptions fields for every item (an item's own override them).
    ``on_result(result, finished, total)`` is called as each item ends (default: a line on stderr).
    """
    from lipdub.pipeline import ensure_avatar

    defaults = dict(options or {})
    if cache_dir:
        defaults.setdefault("cache_dir", cache_dir)
    tally = _Tally(items, on_result)
    finish, todo = tally.finish, tally.todo

    # Each distinct avatar is prepared/trained once, here, so parallel items never race on it.
    avatars: dict[str, str | Exception] = {}
    for i in todo:
        key = items[i].avatar
        if key in avatars:
            continue
        try:
            opts = _options(defaults, items[i])
            avatars[key] = str(ensure_avatar(key, opts).path)
        except Exception as exc:  # noqa: BLE001
            avatars[key] = exc
    runnable = []
    for i in todo:
        found = avatars[items[i].avatar]
        if isinstance(found, Exception):
            finish(i, ItemResult(items[i], "failed", f"avatar {items[i].avatar}: {found}"))
        else:
            runnable.append(i)

    if jobs <= 1 or len(runnable) <= 1:
        for i in runnable:
            error, seconds = _run_one(items[i], avatars[items[i].avatar], defaults)
            finish(i, ItemResult(items[i], "failed" if error else "done", error, seconds))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no inherited threads or onnxruntime state
        with ProcessPoolExecutor(max_workers=min(jobs, len(runnable)), mp_context=ctx) as pool:
            futures = {pool.submit(_run_one, items[i], avatars[items[i].avatar], defaults): i
                       for i in runnable}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    error, seconds = fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker process died
                    error, seconds = f"worker process failed: {exc}", 0.0
                finish(i, ItemResult(items[i], "failed" if error else "done", error, seconds))
    return tally.report()


def _progress_line(result: ItemResult, finished: int, total: int) -> str:
    what = {"done": f"done in {result.seconds:.1f} s", "skipped": "already complete",
            "failed": f"FAILED: {result.error}"}[result.status]
    return f"[{finished}/{total}] {result.item.output}: {what}"


# ------------------------------------------------------------------------------------ broker

def run_batch_broker(items: list[BatchItem], broker: str, storage: str | os.PathLike,
                     options: dict | None = None, timeout: float | None = None,
                     on_result: Callable[[ItemResult, int, int], None] | None = None) -> BatchReport:
    """Like ``run_batch``, on the `lipdub worker`s behind ``broker``: inputs are staged into the
    shared ``storage`` folder (each avatar once; a raw video is prepared and trained there by a
    prepare job the generate jobs wait for) and each result is copied to its output."""
    from lipdub.scale.client import BatchClient

    defaults = dict(options or {})
    tally = _Tally(items, on_result)
    finish, todo = tally.finish, tally.todo
    if todo:
        started = time.monotonic()
        with BatchClient(broker, storage) as client:
            staged: dict[str, tuple[str, str | None] | Exception] = {}
            jobs: dict[str, int] = {}
            for i in todo:
                item = items[i]
                try:
                    _options(defaults, item)  # refuse bad options before anything is sent
                    if item.avatar not in staged:
                        staged[item.avatar] = _stage_avatar(client, item.avatar)
                    found = staged[item.avatar]
                    if isinstance(found, Exception):
                        raise found
                    avatar_dir, after = found
                    job = client.submit("generate", {"avatar_dir": avatar_dir,
                                                     "audio": client.stage(item.audio)},
                                        {**defaults, **item.options}, after=after)
                    jobs[job] = i
                except Exception as exc:  # noqa: BLE001
                    finish(i, ItemResult(item, "failed", str(exc)))
            seen: set[str] = set()

            def update(records: list[dict]) -> None:
                for job in records:
                    if job["id"] in seen or job["state"] not in ("done", "failed", "cancelled"):
                        continue
                    seen.add(job["id"])
                    i = jobs[job["id"]]
                    finish(i, _collect(client, job, items[i], time.monotonic() - started))

            client.wait(list(jobs), timeout=timeout, on_update=update)
    return tally.report()


def _stage_avatar(client, avatar: str):
    path = Path(avatar)
    if not path.exists():
        return InputError(f"no such file or folder: {path}")
    try:
        if path.is_dir():
            return client.stage(path), None
        folder = f"avatars/{client.batch_id}-{path.stem}"
        # No training: the renderer works from the mouth bank that preparation builds.
        prep = client.submit("prepare", {"source": client.stage(path), "avatar_dir": folder}, {})
        return folder, prep
    except Exception as exc:  # noqa: BLE001
        return exc


def _collect(client, job: dict, item: BatchItem, seconds: float) -> ItemResult:
    if job["state"] != "done":
        return ItemResult(item, "failed", job.get("error") or job["state"], seconds)
    src = client.result_path(job)
    if src is None or not src.is_file():
        return ItemResult(item, "failed", "the worker reported no output file", seconds)
    from lipdub.errors import LipdubError
    from lipdub.video import probe, verify_output

    out = Path(item.output)
    partial = out.with_name(f"{out.name}.partial{out.suffix or '.mp4'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, partial)
        # The same check every writer makes: a copy cut short (full disk) never looks finished.
        audio = probe(item.audio)
        verify_output(partial, audio.audio_duration or None, probe(partial).fps or 25.0, name=out)
        os.replace(partial, out)
    except (OSError, LipdubError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or str(exc)
        return ItemResult(item, "failed", f"cannot save the result to {out}: {reason}", seconds)
    return ItemResult(item, "done", None, seconds)
