"""datacard.md: what a built dataset holds and how it was made (counts, thresholds, models, licences)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedbench.faces.perception import PerceptionConfig
from fedbench.labels import EXPRESSIONS


def write_datacard(out: Path, config: Any, counts: list[Any], per_class: dict[str, dict[str, int]],
                   sources: list[Path], executor: str) -> Path:
    from fedbench import __version__
    from fedbench.scoring.provenance import backbones_used

    lines = [f"# Data card — {out.name}", "",
             f"Built by fedbench {__version__} with the `{executor}` executor from: "
             + ", ".join(f"`{s}`" for s in sources) + ".", "",
             "## Triplets per target class", "", "| class | test | train |", "|---|---:|---:|"]
    for c in EXPRESSIONS:
        if c in per_class:
            lines.append(f"| {c} | {per_class[c]['test']} | {per_class[c]['train']} |")
    lines.append(f"| **all** | {sum(v['test'] for v in per_class.values())} | "
                 f"{sum(v['train'] for v in per_class.values())} |")
    lines += ["", "## Stages", "", "| stage | in | out | rejected | seconds | top rejection reasons |",
              "|---|---:|---:|---:|---:|---|"]
    for c in counts:
        top = sorted(c.reasons.items(), key=lambda kv: -kv[1])[:3]
        reasons = "; ".join(f"{k} ({v})" for k, v in top).replace("|", "/")
        lines.append(f"| {c.name} | {c.inputs} | {c.outputs} | {c.rejected} | {c.seconds} | {reasons} |")
    gt = config.ground_truth
    lines += ["", "## Ground-truth editor", "",
              f"`{gt.editor}` with {gt.seeds} seed(s) per triplet (base seed {gt.base_seed}); parameters: "
              f"`{gt.editor_args or {}}`. The ground truth is SYNTHETIC: made by this editor and kept only when "
              "verification passed (thresholds below).", "",
              "## Perception backbones", "", "| model | version | licence | sha256 |", "|---|---|---|---|"]
    for name, m in backbones_used(PerceptionConfig())["models"].items():
        lines.append(f"| {name} | {m.get('version', '')} | {m.get('licence', '')} | {str(m.get('sha256', ''))[:16]}… |")
    lines += ["", "## Thresholds and settings", "", "```yaml",
              yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).rstrip(), "```", "",
              "## Licences", "",
              "The built images derive from the source footage: its licence applies to them, and each row's "
              "`meta.origin` names the file (and video time) it came from. The ground truths are outputs of the "
              "editor above; check its model licence before you redistribute them. The perception models' "
              "licences are listed above.", ""]
    path = out / "datacard.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
