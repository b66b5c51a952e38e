"""Graded sequences (fedscore.md, meta-evaluation item 3): frames of one face at rising intensity.

With frame 0 as the source and the last frame as ground truth, the gain g of frames 1..L-1 must rise
(late frames above early ones by >= 0.4) and settle near 1 (late median in [0.6, 1.25]); Spearman
against the frame index is reported, not required. With a middle frame as ground truth, where REG
peaks among the other frames is reported.

File format (the shared `sequences.json`): a JSON list of
`{"id": str, "frames": [path, ...], "target": str, "instruction"?: str}`, paths relative to the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.stats import spearmanr

from fedbench.labels import EXPRESSIONS, normalise_expression

MIN_FRAMES = 4  # source, at least two edits, ground truth
EARLY_SHARE = 0.20  # first fifth of the frames before the ground truth
LATE_SHARE = 0.25  # last quarter of the frames before the ground truth
RISE_MIN = 0.4
LATE_MEDIAN_RANGE = (0.6, 1.25)


class SequenceError(ValueError):
    """A malformed sequences file; the message names the file and the entry."""


@dataclass
class Sequence:
    id: str
    frames: list[Path]
    target: str
    instruction: str
    index: int  # position in the file (1-based), for messages

    @property
    def middle(self) -> int:
        """Frame index used as the middle ground truth (14 of frames 0..27)."""
        return len(self.frames) // 2


@dataclass
class SequenceFile:
    path: Path
    sequences: list[Sequence]
    skipped: list[dict[str, str]] = field(default_factory=list)  # id, reason


def read_sequences(path: str | Path) -> SequenceFile:
    """Read and validate a sequences file: every problem names the file and the entry."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SequenceError(f"{path}: sequences file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SequenceError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, list):
        raise SequenceError(f"{path}: expected a JSON list of sequences")
    problems: list[str] = []
    sequences: list[Sequence] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for n, entry in enumerate(data, 1):
        where = f"entry {n}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        sid = entry.get("id")
        where += f" (id {sid!r})" if sid else ""
        frames = entry.get("frames")
        target_raw = entry.get("target")
        if not isinstance(sid, str) or not sid.strip():
            problems.append(f"{where}: missing id")
            continue
        if sid in seen:
            problems.append(f"{where}: duplicate id")
            continue
        seen.add(sid)
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            problems.append(f"{where}: 'frames' must be a list of paths")
            continue
        if len(frames) < MIN_FRAMES:
            problems.append(f"{where}: {len(frames)} frames; at least {MIN_FRAMES} are needed")
            continue
        if not isinstance(target_raw, str):
            problems.append(f"{where}: missing target")
            continue
        resolved = [(path.parent / f).resolve() for f in frames]
        missing = [f"frame {i} {frames[i]!r}" for i, p in enumerate(resolved) if not p.is_file()]
        if missing:
            problems.append(f"{where}: file not found: {', '.join(missing[:5])}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
            continue
        target = normalise_expression(target_raw)
        if target is None:  # e.g. contempt: a real sequence, outside the seven FED-Bench classes
            skipped.append({"id": sid, "reason": f"target {target_raw!r} is not one of {', '.join(EXPRESSIONS)}"})
            continue
        instruction = entry.get("instruction") or f"Make the expression {target}."
        sequences.append(Sequence(sid, resolved, target, str(instruction), n))
    if problems:
        raise SequenceError(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
    return SequenceFile(path, sequences, skipped)


def sequence_rows(seq: Sequence, make_id: Callable[[str, int], str]) -> list[tuple[dict[str, Any], Path, str, int]]:
    """Manifest rows (row, edit frame, ground-truth choice, frame index) for both ground truths."""
    out = []
    last = len(seq.frames) - 1
    for choice, gt in (("last", last), ("middle", seq.middle)):
        for k in range(1, last + 1):
            row = {"id": make_id(choice, k), "source": str(seq.frames[0]),
                   "ground_truth": str(seq.frames[gt]), "target": seq.target, "instruction": seq.instruction}
            out.append((row, seq.frames[k], choice, k))
    return out


def window_sizes(n_before_gt: int) -> tuple[int, int]:
    """(early, late) frame counts among the n frames before the ground truth."""
    early = max(1, round(EARLY_SHARE * n_before_gt))
    late = max(1, math.ceil(LATE_SHARE * n_before_gt))
    return early, late


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def analyse(seq: Sequence, rows_by_choice: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Rise, late level, Spearman (last frame as ground truth) and the REG peak (middle frame)."""
    last = len(seq.frames) - 1
    frames = list(range(1, last + 1))
    lr = rows_by_choice["last"]
    gain = np.array([_f(lr[k].get("gain")) for k in frames])
    before = gain[:-1]  # frames 1..L-1; frame L is the ground truth itself (g = 1 by construction)
    n_early, n_late = window_sizes(len(before))
    early, late = before[:n_early], before[-n_late:]
    valid = ~np.isnan(before)
    rho = float(spearmanr(np.arange(len(before))[valid], before[valid])[0]) if valid.sum() >= 3 else None
    with np.errstate(all="ignore"):  # frames without a face (no gain) are left out; all missing -> None
        has_late, has_early = bool((~np.isnan(late)).any()), bool((~np.isnan(early)).any())
        rise_v = float(np.nanmean(late) - np.nanmean(early)) if has_late and has_early else math.nan
        late_v = float(np.nanmedian(late)) if has_late else math.nan
    rise = None if math.isnan(rise_v) else round(rise_v, 4)
    late_median = None if math.isnan(late_v) else round(late_v, 4)
    mr = rows_by_choice["middle"]
    m = seq.middle
    reg_mid = np.array([_f(mr[k].get("reg")) for k in frames])
    gain_mid = np.array([_f(mr[k].get("gain")) for k in frames])
    others = [k for k in frames if k != m and not math.isnan(reg_mid[k - 1])]
    peak = max(others, key=lambda k: reg_mid[k - 1]) if others else None
    statuses = sorted({r["status"] for c in rows_by_choice.values() for r in c.values()})
    return {
        "id": seq.id, "target": seq.target, "frames": len(seq.frames),
        "status_counts": {s: sum(r["status"] == s for c in rows_by_choice.values() for r in c.values())
                          for s in statuses},
        "gain_last_gt": [None if math.isnan(x) else round(float(x), 4) for x in gain],
        "early_frames": [1, n_early], "late_frames": [len(before) - n_late + 1, len(before)],
        "rise": rise, "late_median": late_median,
        "spearman_gain_vs_frame": None if rho is None or math.isnan(rho) else round(rho, 4),
        "rise_ok": rise is not None and rise >= RISE_MIN,
        "late_level_ok": late_median is not None and LATE_MEDIAN_RANGE[0] <= late_median <= LATE_MEDIAN_RANGE[1],
        "middle_gt_frame": m,
        "gain_middle_gt": [None if math.isnan(x) else round(float(x), 4) for x in gain_mid],
        "reg_middle_gt": [None if math.isnan(x) else round(float(x), 4) for x in reg_mid],
        "reg_peak_frame": peak,
        "reg_peak_value": None if peak is None else round(float(reg_mid[peak - 1]), 4),
        "reg_peak_offset": None if peak is None else peak - m,
    }


def _txt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def plot_sequence(result: dict[str, Any], dest: Path) -> None:
    """Gain along the sequence for both ground truths, and REG with the middle frame as ground truth."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    frames = np.arange(1, len(result["gain_last_gt"]) + 1)
    as_arr = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=float)  # noqa: E731
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    a.plot(frames, as_arr(result["gain_last_gt"]), "o-", ms=3, label="ground truth = last frame")
    a.plot(frames, as_arr(result["gain_middle_gt"]), "s-", ms=3, alpha=0.7,
           label=f"ground truth = frame {result['middle_gt_frame']}")
    e0, e1 = result["early_frames"]
    l0, l1 = result["late_frames"]
    a.axvspan(e0 - 0.5, e1 + 0.5, color="0.85", zorder=0)
    a.axvspan(l0 - 0.5, l1 + 0.5, color="0.85", zorder=0)
    a.axhline(1.0, color="k", lw=0.8, ls="--")
    a.set(xlabel="frame (intensity)", ylabel="gain g",
          title=f"{result['id']}: rise {_txt(result['rise'])}, late median {_txt(result['late_median'])}")
    a.legend(fontsize=8)
    b.plot(frames, as_arr(result["reg_middle_gt"]), "o-", ms=3, color="C2")
    b.axvline(result["middle_gt_frame"], color="k", lw=0.8, ls="--")
    if result["reg_peak_frame"] is not None:
        b.plot([result["reg_peak_frame"]], [result["reg_peak_value"]], "r*", ms=10, label="peak (other frames)")
        b.legend(fontsize=8)
    b.set(xlabel="frame (intensity)", ylabel="REG", ylim=(-0.02, 1.05),
          title=f"REG, ground truth = frame {result['middle_gt_frame']}")
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, metadata={"Software": None})  # no version string: the same numbers give the same file
    plt.close(fig)
