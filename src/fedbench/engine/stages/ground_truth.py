"""Stage 6, ground truth: the configured editor (any adapter) edits each source towards its target,
`seeds` times with different seeds. Candidates go to work/gt/<id>-s<k>.png; verification picks one."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from fedbench.editors.base import EditRequest, EditStatus
from fedbench.editors.config import load_editor_config, sample_seed
from fedbench.editors.registry import build_editor
from fedbench.editors.secrets import scrub
from fedbench.engine.faults import is_fatal, is_transient
from fedbench.engine.stage import Outcome, Record, Rejected, Stage
from fedbench.store.atomic import write_bytes_atomic


class GroundTruth(Stage):
    name = "ground_truth"

    @property
    def num_gpus(self) -> float:  # type: ignore[override]
        return self.config.ground_truth.num_gpus

    def setup(self) -> None:
        cfg = self.config.ground_truth
        self.editor_config = load_editor_config(cfg.editor, cfg.editor_args or None, seed=cfg.base_seed)
        self.editor = build_editor(self.editor_config)
        (self.work / "gt").mkdir(parents=True, exist_ok=True)

    def teardown(self) -> None:
        self.editor.close()

    def process(self, record: Record) -> Outcome:
        cfg = self.config.ground_truth
        candidates, problems = [], []
        for k in range(cfg.seeds):
            seed = sample_seed(cfg.base_seed, f"{record['id']}#{k}")
            request = EditRequest(sample_id=record["id"], source=Path(record["image"]),
                                  instruction=record["instruction"], target=record["target"], seed=seed,
                                  source_expression=None if record.get("source_expression") == "unknown"
                                  else record.get("source_expression"))
            try:
                result = self.editor.edit(request)
            except Exception as exc:  # one candidate's failure is a reason, not a crash...
                if is_transient(exc) or is_fatal(exc):
                    raise  # ...unless the machine is to blame (OOM, a locked database): retried, never journaled
                problems.append(f"seed {seed}: {type(exc).__name__}: {scrub(str(exc), self.editor.secret_values())}")
                continue
            if result.status != EditStatus.OK or result.image is None:
                problems.append(f"seed {seed}: {result.status.value}: {result.reason}")
                continue
            dest = self.work / "gt" / f"{record['id']}-s{k}.png"
            buf = io.BytesIO()
            Image.fromarray(result.image).save(buf, format="PNG", compress_level=1)
            write_bytes_atomic(dest, buf.getvalue())
            candidates.append({"seed": seed, "image": str(dest)})
        if not candidates:
            return Rejected("the editor gave no image: " + "; ".join(problems)[:500])
        return [{**record, "gt_candidates": candidates, "editor": self.editor_config.name}]
