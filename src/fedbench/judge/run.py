"""The judge pass of a scoring run: in the main process, before any row is built.

Every edited image E (and G where the role needs it) is judged once per (judge config, prompt
version, image content, actions asked), answers coming from the cache first; calls run on a small
thread pool sharing the config's rate limit. Each triplet then gets a `core.JudgeVerdict` (or None
when there is no edit to judge) and a reason, which the scoring workers pass to the metric core.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.manifest import Triplet
from fedbench.judge.cache import JudgeCache, answer_key, image_sha256
from fedbench.judge.client import JudgeClient
from fedbench.judge.config import JudgeConfig
from fedbench.judge.schema import PROMPT_VERSION, JudgeAnswer, askable
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.core import JudgeVerdict
from fedbench.metrics.lexicon import named_actions, parse_actions
from fedbench.metrics.spec import get_spec


@dataclass
class JudgeStats:
    """What the judge cost this run (run.json) and how often it gave no answer (summary.json)."""

    images: int = 0
    cached: int = 0
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "cached": self.cached, "calls": self.calls, "tokens": self.tokens,
                "seconds": round(self.seconds, 3)}


def asked_actions(t: Triplet) -> list[str]:
    """The lexicon actions a triplet names (manifest field, else instruction): what the judge is asked."""
    actions = named_actions(t.actions) if t.actions else parse_actions(t.instruction)
    return askable([a.name for a in actions])


def _probs(answer: JudgeAnswer) -> np.ndarray:
    assert answer.reply is not None
    return np.array([answer.reply.expression[e] for e in EXPRESSIONS], dtype=np.float64)


def judge_triplets(config: JudgeConfig, triplets: list[Triplet], edit_paths: dict[str, Path | None],
                   version: str, cache_path: Path, progress: Any = None,
                   client: JudgeClient | None = None
                   ) -> tuple[dict[str, tuple[JudgeVerdict | None, str | None]], JudgeStats]:
    """Judge each triplet's edit (and G for a relative emotion-member judge). Returns, per id,
    (verdict, reason) for `score_triplet`, and the run's judge statistics."""
    need_gt = config.role == "emotion-member" and get_spec(version).relative("a_emo")
    jobs: dict[str, tuple[Path, list[str]]] = {}  # answer key -> (image, actions)
    keys: dict[str, tuple[str | None, str | None]] = {}  # id -> (edit key, gt key); None: not judged
    h = config.config_hash()
    for t in triplets:
        edit = edit_paths.get(t.id)
        if edit is None:
            keys[t.id] = (None, None)
            continue
        acts = asked_actions(t)
        ks: list[str | None] = []
        for path in (Path(edit), Path(t.ground_truth) if need_gt else None):
            if path is None:
                ks.append(None)
                continue
            try:
                k = answer_key(h, PROMPT_VERSION, image_sha256(path), acts)
            except OSError:  # unreadable: scoring names the problem; nothing to judge
                ks.append(None)
                continue
            jobs.setdefault(k, (path, acts))
            ks.append(k)
        keys[t.id] = (ks[0], ks[1])

    stats = JudgeStats(images=len(jobs))
    cache = JudgeCache(cache_path)
    answers: dict[str, JudgeAnswer] = {}
    todo = []
    for k, job in jobs.items():
        hit = cache.get(k)
        if hit is not None:
            answers[k] = hit
            stats.cached += 1
        else:
            todo.append((k, job))
    task = progress.add_task(f"judge {config.name}", total=len(todo)) if progress is not None and todo else None
    own = client is None and bool(todo)
    client = client or (JudgeClient(config) if todo else None)
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(config.concurrency) as pool:
            futures = [(k, pool.submit(client.judge, path, acts, k)) for k, (path, acts) in todo]  # type: ignore[union-attr]
            for k, fut in futures:
                a = fut.result()
                answers[k] = a
                cache.put(k, a)  # writes stay in this thread
                stats.calls += a.calls
                stats.tokens += a.tokens
                if task is not None:
                    progress.advance(task)
    finally:
        if own and client is not None:
            client.close()
        cache.close()
    stats.seconds = time.perf_counter() - t0

    out: dict[str, tuple[JudgeVerdict | None, str | None]] = {}
    for t in triplets:
        ek, gk = keys[t.id]
        if ek is None:
            out[t.id] = (None, "no readable edited image to judge")
            continue
        e, g = answers[ek], answers[gk] if gk else None
        status, reason = e.status, e.reason
        if e.ok and g is not None and not g.ok:
            status, reason = g.status, f"ground truth: {g.reason}"
        if status != "ok":
            out[t.id] = (JudgeVerdict(status, config.role, config.weight), reason)
        else:
            out[t.id] = (JudgeVerdict("ok", config.role, config.weight, _probs(e), None if g is None else _probs(g),
                                      dict(e.reply.actions)), None)  # type: ignore[union-attr]
    return out, stats


RULE_KEYS = ("alignment_rules", "a_emo_rules", "a_act_rules", "fed_rules")


def judge_summary(config: JudgeConfig, rows: list[dict[str, Any]], stats: JudgeStats) -> dict[str, Any]:
    """summary.json's `judge` block: the config (no key: only the variable's name), prompt version, role,
    counts per judge status, and the rule-based macro means beside the judged ones (`overall`)."""
    from fedbench.metrics.aggregate import _class_values, macro_mean
    from fedbench.metrics.fedscore import EXCLUDED

    scored = [r for r in rows if r["status"] not in EXCLUDED]
    counts: dict[str, int] = {"ok": 0, "judge_failed": 0, "judge_refused": 0, "not_judged": 0}
    for r in rows:
        s = r.get("judge_status") or "not_judged"
        counts[s] = counts.get(s, 0) + 1
    rules = {k: macro_mean(_class_values(scored, k)) for k in RULE_KEYS}
    return {
        "config": config.public(), "prompt_version": PROMPT_VERSION, "role": config.role, "weight": config.weight,
        "status_counts": counts, "judge_failed": counts["judge_failed"], "judge_refused": counts["judge_refused"],
        "failures": [{"id": r["id"], "judge_status": r["judge_status"], "reason": r.get("judge_reason")}
                     for r in rows if r.get("judge_status") in ("judge_failed", "judge_refused")],
        "rules_overall": {k: None if v is None else round(v, 4) for k, v in rules.items()},
    }
