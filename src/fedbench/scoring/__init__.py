"""Scoring a benchmark: manifest + edited images -> samples.jsonl + summary.json."""

from fedbench.scoring.runner import ScoreResult, score

__all__ = ["ScoreResult", "score"]
