"""Mouth-motion metrics shared by ``benchmarks/motion_eval.py``, ``benchmarks/sync_eval.py`` and tests.

All take per-frame aperture series (any units, generated and real on the same frames) and a
speech mask (voice activity on):

- ``amplitude_ratio``: generated / real, mean and 90th percentile, during speech;
- ``closure_recall``: share of the real mouth's closures during speech (runs of frames at most
  ``CLOSED`` of its own 90th percentile: p/b/m, pauses inside words) that the generated mouth also
  closes (same relative threshold, its own 90th percentile) within ±1 frame; its precision is the
  share of generated closures that a real one meets within ±1 frame;
- ``lagged``: r at lag 0 and the best lag within ±``max_lag`` (positive: real mouth later);
- ``silence_jitter``: mean absolute frame-to-frame change in silence.
"""

from __future__ import annotations

import numpy as np

#: A mouth is "closed" at or below this fraction of its own 90th-percentile speech aperture.
CLOSED = 0.1


def pearson(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if len(a) < 3:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else 0.0


def paired_at(gen, real, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``gen`` and ``real`` re-paired by ``lag`` frames (``lag > 0``: the real mouth runs later),
    trimmed to the frames both cover."""
    n = min(len(gen), len(real))
    return (gen[:n - lag], real[lag:n]) if lag >= 0 else (gen[-lag:n], real[:n + lag])


def lagged(gen, real, max_lag: int = 2) -> dict:
    """``{"r0", "best_lag", "r_best"}``; ``best_lag > 0``: the real mouth moves after the generated."""
    gen, real = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    rs = {}
    for lag in range(-max_lag, max_lag + 1):
        a, b = paired_at(gen, real, lag)
        rs[lag] = pearson(a, b) if len(a) > 8 else float("nan")
    finite = {k: v for k, v in rs.items() if np.isfinite(v)}
    best = max(finite, key=lambda k: (finite[k], -abs(k))) if finite else 0
    return {"r0": rs[0], "best_lag": int(best), "r_best": finite.get(best, float("nan"))}


def shift(series: np.ndarray, delay: int) -> np.ndarray:
    """``out[t] = series[t - delay]`` with the ends edge-replicated (``delay > 0``: later)."""
    s = np.asarray(series)
    if delay == 0 or len(s) == 0:
        return s
    idx = np.clip(np.arange(len(s)) - delay, 0, len(s) - 1)
    return s[idx]


def amplitude_ratio(gen, real, speech) -> dict:
    speech = np.asarray(speech, bool)
    g, r = np.asarray(gen, np.float64)[speech], np.asarray(real, np.float64)[speech]
    if len(g) < 5:
        return {"mean": float("nan"), "p90": float("nan")}
    rm, r90 = r.mean(), np.percentile(r, 90)
    return {"mean": float(g.mean() / rm) if rm > 0 else float("nan"),
            "p90": float(np.percentile(g, 90) / r90) if r90 > 0 else float("nan")}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def closures(series, speech, closed: float = CLOSED) -> np.ndarray:
    """Frames (during speech) where the mouth is closed relative to its own speech range."""
    s = np.asarray(series, np.float64)
    speech = np.asarray(speech, bool)
    if speech.sum() < 5:
        return np.zeros(len(s), bool)
    thr = closed * np.percentile(s[speech], 90)
    return speech & (s <= thr)


def closure_recall(gen, real, speech, tolerance: int = 1) -> dict:
    """``{"recall", "precision", "real_closures", "generated_closures"}`` (see module notes)."""
    speech = np.asarray(speech, bool)
    cg, cr = closures(gen, speech), closures(real, speech)

    def hits(events, other):
        n = len(other)
        return sum(bool(other[max(0, a - tolerance):min(n, b + tolerance)].any()) for a, b in events)

    real_events, gen_events = _runs(cr), _runs(cg)
    return {"recall": hits(real_events, cg) / len(real_events) if real_events else float("nan"),
            "precision": hits(gen_events, cr) / len(gen_events) if gen_events else float("nan"),
            "real_closures": len(real_events), "generated_closures": len(gen_events)}


def silence_jitter(series, silent) -> float:
    s = np.asarray(series, np.float64)
    silent = np.asarray(silent, bool)
    both = silent[1:] & silent[:-1]
    return float(np.abs(np.diff(s))[both].mean()) if both.sum() >= 3 else float("nan")


def mean_by(rows: list[dict], key: str, group: str = "speaker") -> float:
    """Mean over groups (speakers) of the mean of ``key`` within each; NaNs ignored."""
    by: dict[str, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if v is not None and np.isfinite(v):
            by.setdefault(r[group], []).append(float(v))
    return float(np.mean([np.mean(v) for v in by.values()])) if by else float("nan")
