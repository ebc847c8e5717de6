"""Figure helpers shared by the run report (:mod:`neurosim.report`) and the comparison
(:mod:`neurosim.compare`).

Figures are drawn on a :class:`matplotlib.figure.Figure` with an explicit Agg canvas, never
through ``pyplot``: no global backend or figure registry is touched, nothing leaks between
figures, and it works on machines without a display. Files are written atomically with
:func:`neurosim.runio.atomic_write_bytes`. matplotlib is imported on first use, so importing
this module (and the CLI) stays cheap.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurosim.runio import atomic_write_bytes
from neurosim.stats import mean_std

DPI = 130
# matplotlib's "tab10" cycle, spelled out so that colours are stable without importing it.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
NOISE_SHADE = "0.92"


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 7.0, height: float = 4.2,
               **subplot_kw):
    """A figure with an Agg canvas and a 2-D array of axes (``squeeze=False``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_png(fig, path: Path) -> Path:
    """Render ``fig`` as PNG and write it atomically to ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


# ----------------------------------------------------------------------------- data access
def as_float(value) -> float:
    """``value`` as a float; ``None``, strings and other non-numbers give ``nan``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def column(records: list[dict], key: str, layer: str | None = None) -> np.ndarray:
    """``record[key]`` (or ``record[key][layer]``) of every record as float64; missing -> nan."""
    out = []
    for record in records:
        value = record.get(key)
        if layer is not None:
            value = value.get(layer) if isinstance(value, dict) else None
        out.append(as_float(value))
    return np.asarray(out, dtype=np.float64)


def layer_keys(*mappings) -> list[str]:
    """The layer keys ("1", "2", ...) found in any of ``mappings``, in numeric order."""
    keys = set()
    for mapping in mappings:
        if isinstance(mapping, dict):
            keys.update(mapping)
    return sorted(keys, key=lambda k: (0, int(k), "") if str(k).isdigit() else (1, 0, str(k)))


def layers_in(records: list[dict], key: str) -> list[str]:
    return layer_keys(*(r.get(key) for r in records))


def last_layer(mapping) -> str | None:
    """The highest layer key of a ``{layer: value}`` dict (the last feedback layer)."""
    keys = layer_keys(mapping)
    return keys[-1] if keys else None


def finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


# ----------------------------------------------------------------------------- timelines
@dataclass(frozen=True)
class Timeline:
    """x positions (optimizer steps) of a run's two phases on one axis.

    Noise-phase records sit at their own step; data-phase records at ``boundary + step``, so
    data step 0 (the state right after preconditioning) coincides with the last noise step.
    ``boundary`` is ``None`` when the run has no noise phase.
    """

    x_noise: np.ndarray
    x_train: np.ndarray
    boundary: float | None


def timeline(noise: list[dict], train: list[dict]) -> Timeline:
    x_noise = column(noise, "step")
    boundary = float(np.nanmax(x_noise)) if x_noise.size and np.isfinite(x_noise).any() else None
    x_train = column(train, "step") + (boundary or 0.0)
    return Timeline(x_noise, x_train, boundary)


def step_label(line: Timeline) -> str:
    """x-axis label of a :class:`Timeline` axis."""
    if line.boundary is None:
        return "optimizer step (data phase)"
    return "optimizer step (noise phase, then data phase)"


def mark_noise_phase(ax, line: Timeline) -> None:
    """Shade the noise phase, draw the phase boundary and label both phases at the top."""
    if line.boundary is None:
        return
    start = float(np.nanmin(line.x_noise))
    ax.axvspan(start, line.boundary, color=NOISE_SHADE, zorder=0)
    ax.axvline(line.boundary, color="0.35", linestyle="--", linewidth=1)
    top = ax.get_xaxis_transform()
    ax.text(start, 1.01, " noise preconditioning", transform=top, va="bottom", ha="left",
            fontsize=8, color="0.3")
    ax.text(line.boundary, 1.01, " data training", transform=top, va="bottom", ha="left",
            fontsize=8, color="0.3")


def phased(line: Timeline, noise: list[dict], train: list[dict], key: str,
           layer: str) -> tuple[np.ndarray, np.ndarray]:
    """x positions and ``record[key][layer]`` of both phases' records (missing -> nan)."""
    return (np.concatenate((line.x_noise, line.x_train)),
            np.concatenate((column(noise, key, layer), column(train, key, layer))))


def plot_phased(ax, line: Timeline, noise: list[dict], train: list[dict], key: str,
                layer: str, **style) -> None:
    """One continuous curve of ``record[key][layer]`` over both phases."""
    x, y = finite(*phased(line, noise, train, key, layer))
    if x.size:
        ax.plot(x, y, marker="." if x.size < 60 else None, **style)


# ----------------------------------------------------------------------------- across seeds
def mean_std_curves(curves: list[tuple[np.ndarray, np.ndarray]]):
    """Mean and sample std (ddof=1) across curves, point by point.

    ``curves`` are ``(x, y)`` pairs, possibly on different x grids. They are put on the union
    grid by linear interpolation inside each curve's own x range (no extrapolation); at each
    x, the curves defined there are averaged (std nan, no band, where only one is). Returns
    ``(x, mean, std, n)``.
    """
    curves = [finite(np.asarray(x, float), np.asarray(y, float)) for x, y in curves]
    curves = [(x, y) for x, y in curves if x.size]
    if not curves:
        empty = np.empty(0)
        return empty, empty, empty, np.empty(0, dtype=int)
    grid = np.unique(np.round(np.concatenate([x for x, _ in curves]), 12))
    table = np.full((len(curves), grid.size), np.nan)
    for i, (x, y) in enumerate(curves):
        order = np.argsort(x)
        inside = (grid >= x.min()) & (grid <= x.max())
        table[i, inside] = np.interp(grid[inside], x[order], y[order])
    stats = [mean_std(col[np.isfinite(col)]) for col in table.T]
    n = np.isfinite(table).sum(axis=0)
    return grid, np.array([m for m, _ in stats]), np.array([s for _, s in stats]), n


def plot_band(ax, x, mean, std, n, label: str, color_: str, scale: float = 1.0) -> None:
    """Mean curve with a shaded ±std band; the legend label carries the number of runs
    averaged, as a range where it changes along the curve (runs that diverged or ended
    early leave the mean: ``n=3→2``)."""
    if not len(x):
        return
    runs, last = int(n.max()), int(n[-1])
    count = f"{runs}" if int(n.min()) == runs else f"{runs}→{last}" if last < runs else (
        f"{int(n.min())}–{runs}")
    ax.plot(x, mean * scale, color=color_, marker="." if len(x) < 40 else None,
            label=f"{label} (n={count})")
    if runs > 1:
        ax.fill_between(x, (mean - std) * scale, (mean + std) * scale, color=color_,
                        alpha=0.2, linewidth=0)


# ----------------------------------------------------------------------------- stacked bars
def stacked_bars(ax, labels: list[str], stacks: dict[str, list[float]], scale: float = 1.0,
                 colors: dict[str, str] | None = None, width: float = 0.8) -> np.ndarray:
    """One bar per label, each stacked from the segments of ``stacks`` (segment name ->
    one value per label, e.g. an energy ledger's components or phases), in that order.

    Values are multiplied by ``scale`` (e.g. 1e-9 for pJ -> mJ); nan counts as 0. Segments
    that are 0 in every bar are left out of the legend. Returns the bar tops (scaled)."""
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for index, (name, values) in enumerate(stacks.items()):
        heights = np.nan_to_num(np.asarray(values, dtype=np.float64) * scale)
        if len(heights) != len(labels):
            raise ValueError(f"segment {name!r}: {len(heights)} values for {len(labels)} bars")
        shown = bool(np.any(heights != 0))
        ax.bar(x, heights, width, bottom=bottom, label=name if shown else None,
               color=(colors or {}).get(name, color(index)))
        bottom = bottom + heights
    ax.set_xticks(x, labels)
    return bottom
