"""Human-facing output of ``compare_videos``: a short text summary and the aperture plot."""

from __future__ import annotations

from pathlib import Path

from lipdub.errors import OutputError


def _num(value, fmt: str, unit: str = "") -> str:
    """A result value for people: the JSON stand-ins "inf" and None read as "inf" and "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value + unit
    return format(value, fmt) + unit


def _lag_text(mouth: dict) -> str:
    lag = mouth.get("lag")
    if lag is None:
        return "best lag n/a"
    if lag == 0:
        where = "in sync"
    else:
        where = f"B {'late' if lag > 0 else 'early'} by {abs(lag)} frame{'s' if abs(lag) != 1 else ''}"
    return f"best lag {lag:+d} ({where}, r {_num(mouth.get('lag_r'), '.3f')})"


def format_report(result: dict) -> str:
    """A few lines summarising a ``compare_videos`` result for the terminal."""
    frames, size = result["frames"], result["size"]
    lines = [
        f"A: {result['a']}  {size['a'][0]}x{size['a'][1]}, {frames['a']} frames",
        f"B: {result['b']}  {size['b'][0]}x{size['b'][1]}, {frames['b']} frames"
        + ("  (resized to A's size)" if result.get("b_resized") else ""),
        f"compared {frames['compared']} frames at {result['fps']:g} fps",
    ]
    p, s, px = result["psnr"], result["ssim"], result["pixels"]
    lines.append(f"PSNR    mean {_num(p['mean'], '.2f', ' dB')}, min {_num(p['min'], '.2f', ' dB')}, "
                 f"{p['identical_frames']} identical frame{'s' if p['identical_frames'] != 1 else ''}")
    lines.append(f"SSIM    mean {_num(s['mean'], '.4f')}, min {_num(s['min'], '.4f')}")
    share = px["identical_share"]
    lines.append(f"pixels  max diff {_num(px['max_abs_diff'], 'd')}, "
                 f"mean diff {_num(px['mean_abs_diff'], '.2f')}, "
                 f"{_num(None if share is None else 100 * share, '.1f', '%')} identical")
    mouth = result.get("mouth")
    if mouth is not None:
        found = mouth["faces_found"]
        lines.append(f"mouth   r {_num(mouth['r'], '.3f')}, {_lag_text(mouth)}, "
                     f"LMD {_num(mouth['lmd'], '.4f')} (inter-ocular units)")
        lines.append(f"faces   A {found['a']}/{frames['compared']}, B {found['b']}/{frames['compared']}")
    for label, key in (("side by side", "side_by_side"), ("plot", "plot")):
        if result.get("outputs", {}).get(key):
            lines.append(f"{label}: {result['outputs'][key]}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    if "seconds" in result:
        lines.append(f"took {result['seconds']:.1f} s")
    return "\n".join(lines)


def plot_apertures(aperture_a, aperture_b, fps: float, path, mouth: dict,
                   labels: tuple[str, str] = ("A", "B")) -> Path:
    """Write a PNG of both mouth-aperture curves over time; the title gives r and the best lag."""
    # The object API with an Agg canvas, not pyplot: no global figure state, safe in a server thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(10, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    times = [i / fps for i in range(len(aperture_a))]
    ax.plot(times, aperture_a, label=f"A: {labels[0]}", color="tab:blue", linewidth=1.4)
    ax.plot(times, aperture_b, label=f"B: {labels[1]}", color="tab:orange", linewidth=1.4, alpha=0.85)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mouth aperture")
    r_text = "n/a" if mouth.get("r") is None else f"{mouth['r']:.3f}"
    ax.set_title(f"mouth aperture: r = {r_text}, {_lag_text(mouth)}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise OutputError(f"cannot write plot {path}: {exc.strerror or exc}") from exc
    return path
