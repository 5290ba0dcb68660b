"""Stage 3 of generation: the mouths drawn onto template frames, and the frames they go on.

``render_frames`` turns runs of (template frame indices, target landmarks) into output frames:
template frames decoded a few ahead (``template_frames``), the renderer's mouths pasted back
(``draw_mouths``), blended with the template's own frame where a per-frame weight asks for it,
and the renderer restarted at every cut or jump of the template walk (``sequences``). The
pipeline (``lipdub.pipeline``) and the live stream (``lipdub.stream``) both draw through here.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lipdub.composite import paste
from lipdub.render.runtime import Renderer
from lipdub.timeline import blend

#: Output frames of the first render batch: the first frame reaches the encoder sooner (the
#: same frames as a full batch would give).
FIRST_RENDER_FRAMES = 4


def template_frames(avatar, order: np.ndarray) -> Iterator[np.ndarray]:
    """Writable template frames in walk order. A prepared avatar stores JPEG frames, so any order
    is cheap (decoded a few ahead in threads); nothing is held beyond that read-ahead."""
    try:
        yield from avatar.iter_frames(order)
    except TypeError:  # an avatar-like object without indexed iteration
        for i in order:
            yield np.array(avatar.frame(int(i)))


def spans(n: int, step: int, first: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) runs of ``step`` covering 0..n, the first one ``first`` long if given."""
    head = min(n, first) if first else 0
    return ([(0, head)] if head else []) + [(s, min(n, s + step)) for s in range(head, n, step)]


def render_frames(renderer, template, order_and_targets, options,
                  order: np.ndarray | None = None, weights: np.ndarray | None = None
                  ) -> Iterator[np.ndarray]:
    """Output frames from (template indices, target landmarks) runs: render + paste, by chunks
    of ``options.chunk`` (``options``: a ``GenerateOptions``; its ``fps`` sets the walk step).

    ``order`` (all template indices, in output order) lets frame decoding run ahead across runs.
    ``weights`` (per output frame, see ``frame_weights``) blends each frame with its template
    frame: 0 yields the template frame itself (nothing is drawn on it: no face, another person,
    a faded edge), 1 the dubbed one. The renderer starts a new sequence at every cut or jump."""
    source = template_frames(template, order) if order is not None else None
    shots = getattr(template, "shots", None)
    renderer.reset()
    # template frames advanced per output frame (> 1 when the output rate is below the template's)
    walk_step = float(template.fps) / float(options.fps or template.fps)
    done, previous = 0, None
    for idx_run, lm_run in order_and_targets:
        run_frames = source if source is not None else template_frames(template, idx_run)
        # The first batch is short: the first frame reaches the encoder sooner (same frames).
        for s, e in spans(len(idx_run), options.chunk, FIRST_RENDER_FRAMES if not done else None):
            idx = idx_run[s:e]
            tmpl = [next(run_frames) for _ in idx]
            w = np.ones(len(idx), np.float32)
            if weights is not None:
                part = np.asarray(weights[done:done + len(idx)], np.float32)
                w[:len(part)] = part
            done += len(idx)
            drawn = np.flatnonzero(w > 0)
            if not drawn.size:
                yield from tmpl  # nothing dubbed here: the template frames as they are
                continue
            keep = {int(j): tmpl[j].copy() for j in drawn if w[j] < 1}
            out = list(tmpl)
            for run in sequences(idx, drawn, shots, previous, walk_step):
                if run[0] is None:
                    renderer.reset()
                    run = run[1:]
                picked = np.asarray(run)
                dubbed = draw_mouths(renderer, template, [tmpl[j] for j in picked], idx[picked],
                                     lm_run[s:e][picked], face_weights=False)
                for j, frame in zip(picked, dubbed):
                    out[j] = frame if int(j) not in keep else blend(keep[int(j)], frame, float(w[j]))
            previous = int(idx[drawn[-1]])
            yield from out


def sequences(idx: np.ndarray, drawn: np.ndarray, shots, previous: int | None,
               walk_step: float = 1.0) -> list[list]:
    """``drawn`` (positions in ``idx``) cut into runs the renderer can treat as one continuous
    sequence; a run that starts after a cut, a skipped stretch or a jump in the template walk
    (more than ``walk_step`` template frames, rounded up) begins with None (reset the renderer
    first)."""
    runs: list[list] = []
    max_jump = max(1, int(np.ceil(walk_step - 1e-6)))
    for j in drawn:
        t = int(idx[j])
        new = previous is None or abs(t - previous) > max_jump or (
            shots is not None and shots[t] != shots[previous])
        if new or not runs:
            runs.append([None, j] if new else [j])
        else:
            runs[-1].append(j)
        previous = t
    return runs


def draw_mouths(renderer, template, frames_in: list[np.ndarray], idx: np.ndarray,
                targets: np.ndarray, face_weights: bool = True) -> list[np.ndarray]:
    """Template frames with their mouths moved to ``targets`` (template pixels, ``(B, 478, 3)``).

    Footage avatars: the warped real mouth (+ U-Net if trained) is pasted back in place (the
    frames are modified). Photo avatars have no footage of their mouth, so a
    ``PhotoMouthRenderer`` mesh-warps lips and jaw and paints the mouth interior instead.
    ``face_weights``: frames whose template ``dub_weight`` is 0 (no usable face) come back as they
    are, and those in a fade are blended (False: the caller has applied them)."""
    own = getattr(template, "dub_weight", None)
    if face_weights and own is not None:
        w = np.asarray(own, np.float32)[np.asarray(idx)]
        if (w < 1).any():
            out = list(frames_in)
            drawn = np.flatnonzero(w > 0)
            if drawn.size:
                keep = {int(j): frames_in[j].copy() for j in drawn if w[j] < 1}
                dubbed = draw_mouths(renderer, template, [frames_in[j] for j in drawn],
                                     np.asarray(idx)[drawn], np.asarray(targets)[drawn], False)
                for j, frame in zip(drawn, dubbed):
                    out[j] = blend(keep[int(j)], frame, float(w[j])) if int(j) in keep else frame
            return out
    if not isinstance(renderer, Renderer):
        return renderer.render_chunk(frames_in, template.landmarks[idx], targets)
    out = renderer.render_chunk(frames_in, template.boxes[idx], template.landmarks[idx], targets)
    return [paste(frame, out.crops[j], out.alphas[j], template.boxes[idx[j]], out.templates[j],
                  inplace=True) for j, frame in enumerate(frames_in)]


def is_photo(avatar) -> bool:
    return getattr(avatar, "manifest", {}).get("kind") == "photo"


def load_renderer(avatar, options):
    """The mouth renderer of an avatar: warped real mouths from its bank (+ its U-Net if trained),
    or the photo mesh-warp renderer; ``options`` (a ``GenerateOptions``) gives threads, batch
    size and whether the U-Net is used."""
    if is_photo(avatar):
        from lipdub.photo.mouth import PhotoMouthRenderer

        return PhotoMouthRenderer.for_avatar(avatar)
    return Renderer.load(avatar, threads=options.threads, batch_size=options.batch_size,
                         use_network=options.use_network)
