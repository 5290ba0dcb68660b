"""`lipdub prepare video.mp4 -o AVATAR`: an avatar from footage, edited or not.

One pass over the video decodes each frame, tests it for a cut (``face.shots``), finds every face
in it (``FaceTracker.faces_in``; the tracker starts afresh after a cut) with an identity
descriptor, and JPEGs it. Then faces are linked into tracks per shot and tracks into people
(``face.people``), one person is chosen (the largest face, ``face_index`` or ``face_point``), and
their track is stored with a per-frame dub weight: frames without that person's usable face
(none, another person, too small, turned away) have weight 0 and pass through generation
untouched. Finally the renderer's mouth bank is built from the person's usable frames, so the
avatar can be dubbed at once, with no training.

The folder format and its helpers are ``lipdub.avatar_folder``'s; the photo kind lives in
``lipdub.photo.prepare``; ``lipdub.avatar.prepare`` chooses between the two.
"""

from __future__ import annotations

import json
import shutil
import time
import wave
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lipdub.avatar_folder import (FRAMES_DIR, PEOPLE_FILE, Avatar, PrepareOptions, base_manifest,
                                  check_destination, file_sha256, install_avatar_dir, new_work_dir,
                                  store_arrays, write_manifest)
from lipdub.errors import InputError, NoFaceError, OutputError
from lipdub.progress import Progress, ProgressFn

# Frames JPEG-encoded but not yet written: enough to keep both encoder threads busy, few enough
# that a 4K clip doesn't pile up in memory when encoding is the slower side.
_MAX_PENDING_FRAMES = 8


def prepare_footage(source: Path, out_dir: Path, options: PrepareOptions = PrepareOptions(),
                    progress: ProgressFn | None = None, overwrite: bool = False,
                    has_audio: bool = True, is_image: bool = False) -> Avatar:
    """Prepare the avatar folder ``out_dir`` from the video ``source`` (see the module doc).

    NoFaceError only when no usable face is found anywhere (or in fewer than
    ``options.min_face_fraction`` of the frames). ``is_image``: a photo kept as one still frame."""
    from lipdub.face.people import choose_person, dubbed_track, group_people, link_tracks
    from lipdub.face.shots import shot_ids
    from lipdub.video import frame_count

    started = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    check_destination(out_dir, overwrite)
    expected = frame_count(source, options.fps)
    work = new_work_dir(out_dir)
    try:
        # Hashing and audio run beside the tracking loop; both spend their time outside the GIL.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-bg") as background:
            digest = background.submit(file_sha256, source)
            audio_job = (background.submit(_store_audio, source, work, options, expected)
                         if has_audio else None)
            faces, descriptors, cuts, (width, height) = _scan(source, work, options, expected, progress,
                                                              is_image)
            n_frames = len(faces)
            shots = shot_ids(cuts)
            tracks = link_tracks(faces, descriptors, shots, int(round(options.max_gap * options.fps)))
            if not tracks:
                raise NoFaceError(f"no face found in {source}")
            n_people = group_people(tracks)
            person = choose_person(tracks, options.face_index, options.face_point, (width, height))
            if person is None:
                which = (f"{options.face_index + 1} faces in one frame" if options.face_index is not None
                         else f"a face at {options.face_point}")
                raise NoFaceError(f"{source} never shows {which}")
            dub = dubbed_track(tracks, person, shots, width, height, options.smooth,
                               options.min_eye_distance, options.max_yaw, options.fade)
            _require_faces(dub.usable, source, options.min_face_fraction)
            audio_seconds = 0.0
            if audio_job is not None:
                audio_seconds = audio_job.result()
                if options.features and n_frames != expected:
                    # The decoder delivered fewer frames than the header promised: match them.
                    _store_features(work, options.fps, n_frames)
            sha256 = digest.result()
        store_arrays(work, dub.raw, dub.landmarks, dub.boxes, dub.usable, dub.weight, shots)
        people = _people_report(tracks, shots, person, dub.weight)
        (work / PEOPLE_FILE).write_text(json.dumps(people, indent=1) + "\n")
        manifest = base_manifest(
            source, sha256, options.fps, n_frames, width, height, asdict(options),
            source_is_image=is_image, has_audio=has_audio,
            has_features=bool(has_audio and options.features), audio_seconds=audio_seconds,
            frames_with_face=int(dub.usable.sum()), frames_dubbed=int((dub.weight > 0).sum()),
            shots=int(shots.max()) + 1, people=n_people, dubbed_person=int(person))
        write_manifest(work, manifest)
        if options.bank:
            from lipdub.render.reference import prepare_bank

            prepare_bank(Avatar.load(work), progress=progress)
        if manifest["has_features"]:
            from lipdub.motion.calibrate import prepare_calibration

            prepare_calibration(Avatar.load(work))  # the motion amplitude map, fitted once here
        seconds = time.perf_counter() - started
        manifest.update(prepare_seconds=round(seconds, 3), prepare_fps=round(n_frames / seconds, 2))
        write_manifest(work, manifest)
        install_avatar_dir(work, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Avatar.load(out_dir)


def _scan(source: Path, work: Path, options: PrepareOptions, expected: int,
          progress: ProgressFn | None, is_image: bool = False):
    """Every frame: cut test, all faces (+ identity descriptors), JPEG to ``work/frames``.
    Returns (faces per frame, descriptors per frame, cut-before flags, (width, height))."""
    import cv2

    from lipdub.face import FaceTracker
    from lipdub.face.people import identity
    from lipdub.face.shots import CutDetector
    from lipdub.video import read_frames

    frames_dir = work / FRAMES_DIR
    frames_dir.mkdir()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(options.jpeg_quality)]

    def write_jpeg(index: int, frame: np.ndarray) -> None:
        # cv2 releases the GIL while converting and encoding, so this overlaps with tracking.
        path = frames_dir / f"{index:06d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OutputError(f"cannot write {path}")

    faces, descriptors, cuts = [], [], []
    size = (0, 0)
    detector = CutDetector()
    max_faces = max(4, (options.face_index or 0) + 1)
    with FaceTracker(mode="image" if is_image else "video", max_faces=max_faces) as tracker, \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-jpeg") as encoders, \
            Progress(total=expected, stage="prepare", callback=progress) as bar:
        pending: deque = deque()
        for index, frame in enumerate(read_frames(source, options.fps, options.max_size)):
            size = (frame.shape[1], frame.shape[0])
            pending.append(encoders.submit(write_jpeg, index, frame))
            cut = detector.feed(frame) and index > 0
            if cut:
                tracker.restart()
            found = tracker.faces_in(frame)
            faces.append(found)
            descriptors.append([identity(frame, lm) for lm in found])
            cuts.append(cut)
            # Collect finished writes (raising their errors) and bound the backlog.
            while pending and (pending[0].done() or len(pending) > _MAX_PENDING_FRAMES):
                pending.popleft().result()
            bar.update(1)
        for job in pending:
            job.result()
    if not faces:
        raise InputError(f"no frame could be decoded from {source}")
    return faces, descriptors, np.asarray(cuts, bool), size


def _people_report(tracks, shots: np.ndarray, person: int, weight: np.ndarray) -> dict:
    """Per shot: its frames, the people seen in it, and how many frames were dubbed."""
    report = {"dubbed_person": int(person), "shots": []}
    for shot in range(int(shots.max()) + 1):
        frames = np.flatnonzero(shots == shot)
        seen = sorted({tr.person for tr in tracks if tr.shot == shot})
        report["shots"].append({"start": int(frames[0]), "stop": int(frames[-1]) + 1, "people": seen,
                                "frames_dubbed": int((weight[frames] > 0).sum())})
    report["people"] = [{"person": p, "frames": int(sum(len(t.frames) for t in tracks if t.person == p)),
                         "tracks": int(sum(t.person == p for t in tracks))}
                        for p in sorted({t.person for t in tracks})]
    return report


def _require_faces(usable: np.ndarray, source: Path, min_fraction: float) -> None:
    n_found, n_frames = int(usable.sum()), len(usable)
    if n_found == 0:
        raise NoFaceError(f"no usable face found in {source} (none large and frontal enough)")
    if n_found < min_fraction * n_frames:
        raise NoFaceError(f"a usable face was found in only {n_found} of {n_frames} frames of {source}")


def _store_audio(source: Path, work: Path, options: PrepareOptions, n_frames: int) -> float:
    """Write the source's audio as 16 kHz ``audio.wav`` (+ features); returns its seconds."""
    from lipdub.audio import SAMPLE_RATE, load_audio

    audio = load_audio(source)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(work / "audio.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    if options.features:
        _store_features(work, options.fps, n_frames, audio)
    return len(audio) / SAMPLE_RATE


def _store_features(work: Path, fps: float, n_frames: int, audio: np.ndarray | None = None) -> None:
    from lipdub.audio import extract_features

    source = audio if audio is not None else work / "audio.wav"
    extract_features(source, fps, n_frames).save(work / "features.npz")
