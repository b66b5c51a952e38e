"""Time FED-Score's background measure per image pair, the way a scoring worker runs it, and dump its
exact values so that two trees can be compared bit for bit.

For each of the 30 PixelSmile fixture triplets it measures S,E and S,G with registration (2.0), with
one `SourceBackground` shared by the triplet's two pairs when the tree has it (one per triplet, as in a
benchmark of unique sources), then the unregistered measure (1.x) for the values only. The edits are
made from the ground truths (a 0-3 % crop resized back, every fifth one blurred) into --workdir.

Usage:  PYTHONPATH=<tree>/src .venv/bin/python benchmarks/bg_pair.py --workdir /tmp/bg --dump values.pkl
        then compare two dumps with `cmp` (the pickles of identical float tuples are identical bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path

import cv2

from fedbench.data.images import decode_image
from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics import fedscore
from fedbench.scoring import worker
from fedbench.store.features import FeatureCache

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pixelsmile"


def make_edits(fixtures: Path, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    triplets = [json.loads(line) for line in (fixtures / "triplets.jsonl").read_text().splitlines() if line.strip()]
    for i, t in enumerate(triplets):
        g = cv2.imread(str(fixtures / t["ground_truth"]))
        if g is None:
            raise SystemExit(f"{fixtures / t['ground_truth']}: unreadable (triplets.jsonl row {i + 1})")
        h, w = g.shape[:2]
        d = (i % 4) * int(0.01 * w)
        e = cv2.resize(g[d:h - d // 2, d // 2:w - d], (w, h), interpolation=cv2.INTER_AREA) if d else g
        if i % 5 == 0:
            e = cv2.GaussianBlur(e, (5, 5), 0)
        cv2.imwrite(str(out / f"{t['id']}.png"), e)
    return triplets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=Path(os.environ.get("FEDBENCH_FIXTURES", DEFAULT_FIXTURES)))
    ap.add_argument("--workdir", type=Path, required=True, help="edits and a feature cache go here")
    ap.add_argument("--reps", type=int, default=5, help="timed passes; the best is reported")
    ap.add_argument("--dump", type=Path, default=None, help="pickle of every measured value, in order")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as in a scoring worker
    triplets = make_edits(args.fixtures, args.workdir / "edits")
    cache_path = args.workdir / "features.sqlite"
    FeatureCache(cache_path).close()  # workers open it read-only: it must exist
    worker.init_worker(PerceptionConfig().model_dump_json(), str(cache_path), 1)
    max_side = worker._state().perceiver.config.max_side

    def load(path: Path):
        features = worker.perceive_path(path, need_rgb=True).features
        if features is None or not features.faces:
            raise SystemExit(f"{path}: no face found")
        return decode_image(path.read_bytes(), max_side).rgb, features

    items = []
    for t in triplets:
        s, sf = load(args.fixtures / t["source"])
        g, gf = load(args.fixtures / t["ground_truth"])
        e, ef = load(args.workdir / "edits" / f"{t['id']}.png")
        s_face = sf.faces[0]
        items.append((s, e, g, s_face, ef.primary(s_face.box), gf.primary(s_face.box)))
    prepared_cls = getattr(fedscore, "SourceBackground", None)  # absent in trees before it
    best = float("inf")
    values: list = []
    for _ in range(args.reps):
        values = []
        t0 = time.perf_counter()
        for s, e, g, s_face, e_face, g_face in items:
            kw = {} if prepared_cls is None else {"prepared": prepared_cls(s, s_face.landmarks)}
            values.append(fedscore.background_measure(s, e, s_face, e_face, True, **kw))
            values.append(fedscore.background_measure(s, g, s_face, g_face, True, **kw))
        best = min(best, time.perf_counter() - t0)
    values += [fedscore.background_measure(s, e, sf, ef, False) for s, e, g, sf, ef, gf in items]
    worker.shutdown_worker()
    print(f"{'shared source side' if prepared_cls else 'no shared source side'}: "
          f"{best / (2 * len(items)) * 1000:.2f} ms per registered pair (best of {args.reps}, one thread, "
          f"{2 * len(items)} pairs)")
    if args.dump:
        args.dump.write_bytes(pickle.dumps(values))


if __name__ == "__main__":
    main()
