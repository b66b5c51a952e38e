"""Stage 4, target choice: each source gets `targets_per_source` target expressions, never its own,
balanced over the classes: the least-used allowed classes first (ties broken by a hash of the source,
so the order of sources does not bias which class comes first). A class stops taking candidates once
it holds `oversample` x its final quota (test + train)."""

from __future__ import annotations

from fedbench.engine.stage import Outcome, Record, Rejected, Stage, short_hash


class TargetChoice(Stage):
    name = "target"
    mapped = False  # balancing keeps running counts over all sources, in order

    def setup(self) -> None:
        cfg = self.config
        self.counts = {c: 0 for c in cfg.target.classes}
        self.cap = max(1, round(cfg.target.oversample * (cfg.per_class + cfg.train_per_class)))

    def process(self, record: Record) -> Outcome:
        own = record.get("source_expression")
        allowed = [c for c in self.counts if c != own and self.counts[c] < self.cap]
        if not allowed:
            return Rejected("every target class already holds enough candidates")
        allowed.sort(key=lambda c: (self.counts[c], short_hash(record["id"], c)))
        chosen = allowed[: self.config.target.targets_per_source]
        out = []
        for target in chosen:
            self.counts[target] += 1
            out.append({**record, "id": f"{record['id']}-to-{target}", "source_id": record["id"], "target": target})
        return out
