"""Report figures (matplotlib, SVG beside the page): the Fidelity / Alignment trade-off, the gain
distribution per model, and a radar of the components per model.

SVGs are written with a fixed hash salt and no date, so a report built twice is byte-identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedbench.report.runs import Run  # noqa: E402
from fedbench.report.tables import leaderboard  # noqa: E402

RADAR_AXES: tuple[tuple[str, str], ...] = (
    ("a_emo", "A_emo"), ("a_act", "A_act"), ("id_score", "ID"), ("bg", "BG"), ("pq", "PQ"), ("reg", "REG"),
)
_MPL = tuple(int(x) for x in matplotlib.__version__.split(".")[:2])
# The gain axis is clipped for drawing only: a handful of wild edits must not squash the rest.
GAIN_RANGE = (-0.5, 3.0)
_RC = {"svg.hashsalt": "fedbench", "svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
       "axes.spines.right": False}


def _label(name: str) -> str:
    """Model names are user text: keep matplotlib from reading '$...$' as mathtext."""
    return name.replace("$", r"\$")


def _save(fig: Any, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path.name


def _mean(run: Run, dim: str) -> float | None:
    return (run.summary["overall"].get(dim) or {}).get("mean")


def tradeoff(runs: list[Run], path: Path) -> str:
    """Fidelity against Alignment, point area by REG, colour by FED: a lazy edit sits top left
    (keeps everything, follows nothing), an over-edit bottom right."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.6, 4.4))
        xs, ys, regs, feds, names = [], [], [], [], []
        for r in runs:
            a, f = _mean(r, "alignment"), _mean(r, "fidelity")
            if a is None or f is None:
                continue
            xs.append(a)
            ys.append(f)
            regs.append(_mean(r, "reg") or 0.0)
            feds.append(_mean(r, "fed") or 0.0)
            names.append(r.name)
        sc = ax.scatter(xs, ys, s=[40 + 600 * g for g in regs], c=feds, cmap="viridis", vmin=0, vmax=100,
                        alpha=0.8, edgecolors="black", linewidths=0.6)
        for x, y, n in zip(xs, ys, names):
            right = x > 0.75  # label on the inner side, so names near Alignment 1 stay inside the axes
            ax.annotate(_label(n), (x, y), xytext=(-8 if right else 8, -12 if y > 0.9 else 6),
                        textcoords="offset points", fontsize=8, ha="right" if right else "left")
        ax.set_xlim(-0.03, 1.05)
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("Alignment (follows the instruction)")
        ax.set_ylabel("Fidelity (keeps identity, background, quality)")
        ax.text(0.02, 0.02, "point area: REG", transform=ax.transAxes, fontsize=7, color="0.35")
        fig.colorbar(sc, ax=ax, label="FED-Score")
        ax.grid(alpha=0.3)
        return _save(fig, path)


def gains(runs: list[Run], path: Path) -> str:
    """Per-sample gain g per model (1 = the ground truth's change): under-editing left, over right."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.55 * max(1, len(runs))))
        data, labels = [], []
        for r in runs:
            g = np.array([s["gain"] for s in r.samples if s.get("gain") is not None and s.get("status") == "ok"],
                         dtype=np.float64)
            data.append(np.clip(g, *GAIN_RANGE) if g.size else np.array([np.nan]))
            labels.append(f"{_label(r.name)} (n={g.size})")
        ax.axvspan(GAIN_RANGE[0], 1.0, color="#4c72b0", alpha=0.06)
        ax.axvspan(1.0, GAIN_RANGE[1], color="#c44e52", alpha=0.06)
        # matplotlib 3.10 renamed vert=False to orientation="horizontal"; the project allows >= 3.8.
        horizontal = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}
        ax.boxplot(data, widths=0.55, showfliers=True, flierprops={"markersize": 2, "alpha": 0.4}, **horizontal)
        ax.set_yticks(range(1, len(labels) + 1), labels)
        ax.axvline(1.0, color="black", lw=1, ls="--")
        ax.set_xlim(*GAIN_RANGE)
        ax.set_xlabel(f"gain g (1 = ground truth; < 1 under-edit, > 1 over-edit; clipped to {GAIN_RANGE})")
        ax.invert_yaxis()
        return _save(fig, path)


def radar(run: Run, path: Path) -> str:
    """The six leaf components of one model on 0..1 axes (the same scale for every model)."""
    labels = [lab for _, lab in RADAR_AXES]
    values = [(_mean(run, k) or 0.0) for k, _ in RADAR_AXES]
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False).tolist()
    with plt.rc_context({**_RC, "axes.spines.top": True, "axes.spines.right": True}):
        fig, ax = plt.subplots(figsize=(3.0, 3.0), subplot_kw={"polar": True})
        ax.plot(angles + angles[:1], values + values[:1], color="#2a6f97", lw=1.5)
        ax.fill(angles + angles[:1], values + values[:1], color="#2a6f97", alpha=0.25)
        ax.set_xticks(angles, labels)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "0.5", "", "1"], fontsize=7)
        fed = _mean(run, "fed")
        ax.set_title(f"{_label(run.name)} — FED {'n/a' if fed is None else f'{fed:.1f}'}", fontsize=9, pad=12)
        return _save(fig, path)


def make_plots(runs: list[Run], out_dir: Path) -> dict[str, Any]:
    """Write every figure under out_dir/plots; return their paths relative to out_dir."""
    plots = out_dir / "plots"
    order = {e.name: i for i, e in enumerate(leaderboard(runs))}
    runs = sorted(runs, key=lambda r: order[r.name])  # every figure lists models as the leaderboard does
    for old in plots.glob("radar-*.svg"):  # a rebuild with fewer models leaves no stale radar behind
        old.unlink()
    return {
        "tradeoff": "plots/" + tradeoff(runs, plots / "tradeoff.svg"),
        "gains": "plots/" + gains(runs, plots / "gains.svg"),
        "radars": [{"name": r.name, "src": "plots/" + radar(r, plots / f"radar-{i}.svg")} for i, r in enumerate(runs)],
    }
