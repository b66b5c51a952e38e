"""Stage 8, dedupe and split: near-duplicate sources (pHash) are removed, sources are grouped into
identity clusters (identity-embedding cosine, connected components), and whole clusters go to test
or train — an identity never crosses the split. Test takes clusters (in a seeded order) while a class
it holds still needs test triplets and the test stays under `max_test_share` of all triplets; the rest
is training data. Per-class quotas cap both splits."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fedbench.engine.config import BuildConfig
from fedbench.engine.stage import Record, short_hash

_BLOCK = 1024


@dataclass
class SplitResult:
    test: list[Record] = field(default_factory=list)
    train: list[Record] = field(default_factory=list)
    rejected: list[tuple[Record, str]] = field(default_factory=list)


def near_duplicates(sources: list[tuple[str, int]], bits: int) -> dict[str, str]:
    """source id -> the earlier kept source it nearly duplicates (pHash Hamming distance <= bits)."""
    kept_ids: list[str] = []
    kept = np.zeros(len(sources), dtype=np.uint64)
    dupes: dict[str, str] = {}
    for sid, h in sources:
        if kept_ids:
            dist = np.bitwise_count(kept[: len(kept_ids)] ^ np.uint64(h))
            j = int(np.argmin(dist))
            if dist[j] <= bits:
                dupes[sid] = kept_ids[j]
                continue
        kept[len(kept_ids)] = h
        kept_ids.append(sid)
    return dupes


def identity_clusters(ids: list[str], embeddings: np.ndarray, threshold: float) -> dict[str, int]:
    """Connected components of the graph 'cosine >= threshold', computed block by block."""
    n = len(ids)
    if n == 0:
        return {}
    # float64: a cosine within float32 rounding of the threshold must not fall on either side by the
    # BLAS kernel or block shape of the day (the journal's embeddings are rounded to 1e-6 already)
    e = np.asarray(embeddings, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    rows, cols = [], []
    for start in range(0, n, _BLOCK):
        sims = e[start:start + _BLOCK] @ e.T
        r, c = np.nonzero(sims >= threshold)
        rows.append(r + start)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return {sid: int(lab) for sid, lab in zip(ids, labels)}


def split(records: list[Record], config: BuildConfig) -> SplitResult:
    cfg = config.split
    result = SplitResult()
    sources: dict[str, Record] = {}
    for r in records:
        sources.setdefault(r["source_id"], r)
    order = sorted(sources)
    dupes = near_duplicates([(sid, int(sources[sid]["phash"], 16)) for sid in order], cfg.near_duplicate_bits)
    kept_sources = [sid for sid in order if sid not in dupes]
    emb = np.array([sources[sid]["identity_embedding"] for sid in kept_sources], dtype=np.float64).reshape(-1, 128)
    cluster_of = identity_clusters(kept_sources, emb, cfg.identity_cosine)
    # Name clusters by their first source so names survive a rebuild with more footage.
    members: dict[int, list[str]] = defaultdict(list)
    for sid in kept_sources:
        members[cluster_of[sid]].append(sid)
    names = {lab: f"identity-{short_hash(sids[0], n=8)}" for lab, sids in members.items()}

    by_cluster: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r["source_id"] in dupes:
            result.rejected.append((r, f"near-duplicate source of {dupes[r['source_id']]}"))
        else:
            by_cluster[names[cluster_of[r["source_id"]]]].append(r)
    test_counts: Counter[str] = Counter()
    train_counts: Counter[str] = Counter()
    total = sum(len(v) for v in by_cluster.values())
    for name in sorted(by_cluster, key=lambda n: short_hash(cfg.seed, n)):
        rows = sorted(by_cluster[name], key=lambda r: r["id"])
        room = sum(test_counts.values()) + len(rows) <= cfg.max_test_share * total
        wants_test = room and any(test_counts[r["target"]] < config.per_class for r in rows)
        for r in rows:
            row = {**r, "identity": name}
            counts, quota, bucket = ((test_counts, config.per_class, result.test) if wants_test
                                     else (train_counts, config.train_per_class, result.train))
            if counts[r["target"]] < quota:
                counts[r["target"]] += 1
                bucket.append({**row, "split": "test" if wants_test else "train"})
            else:
                result.rejected.append((row, f"over the {'test' if wants_test else 'train'} quota for {r['target']}"))
    return result
