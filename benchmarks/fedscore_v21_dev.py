"""FED-Score 2.1 candidates against 2.0's unmet processing targets, on dev data only (issue 12).

    PYTHONPATH=src .venv/bin/python benchmarks/fedscore_v2_dev.py --versions 2.0 --work /tmp/fedscore_v2_dev
    PYTHONPATH=src .venv/bin/python benchmarks/fedscore_v21_dev.py --work /tmp/fedscore_v2_dev --copies 8

Reads the probe sets and the 2.0 rows that `benchmarks/fedscore_v2_dev.py` made under --work (run
that first; its feature cache is reused), then perceives `--copies` processed copies of every image
through the perception service (metrics/processing.retest_copies: seeded by the image's bytes, so the
same image always gets the same copies and they are cached like any perception; the probes' processed
S and G use other seeds) and re-scores the gain part of every row under each candidate, with k = 4 and
k = --copies copies:

- `2.0 (as scored)`: one perception of each image, 2.0's rules;
- `retest`: per-triplet test-retest of the references only. S's copies, read as edits, give the gain's
  own noise at 0 along this triplet's dG (sigma_0, RMS of their gains), G's copies its noise at 1
  (sigma_1, RMS of gain - 1). REG = 0 when g <= max(2 / |dG|, z sigma_0); `degenerate_gt` when
  z sigma_0 >= 0.5; optionally REG = 1 when |g - 1| <= z1 sigma_1 (a flat top);
- `mean / median of ...`: test-time averaging, each image perceived as the pool of its expression
  fields over itself and its k copies (references only, or every image); Alignment is recomputed from
  the pooled faces;
- `whitened by this face's noise`: each dim additionally divided by this face's own processing noise,
  the RMS move of that dim over S's and G's copies (w_d = 1 / sqrt(1 + f^2 msq_d), in 2.0's units);
- `REG width 0.7`: a wider REG peak than 2.0's 0.5.
- `upscaled to 1024 px`: every image smaller than the perception's working size perceived after a
  cubic upscale to it (steadier inputs for small faces?), 2.0's rules.

FED = 100 REG (A F)^(1/2) as 2.0 combines it, Fidelity from the 2.0 rows (no candidate changes ID, BG or
PQ). Degeneracy keeps 2.0's threshold (the 95th percentile of a single perception's noise norm), which
pooled vectors are measured against too. Cost: extra perceptions per triplet (k per pooled or retested
reference, cached across editors; k per pooled edit, for every editor). Writes
benchmarks/results/fedscore_v21_dev.json and prints the table docs/fedscore.md quotes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress

from fedbench.data.images import decode_image
from fedbench.data.manifest import read_manifest
from fedbench.faces.perception import FaceFeatures
from fedbench.faces.service import PerceptionService
from fedbench.metrics import core, processing
from fedbench.metrics.reg import reg_score
from fedbench.metrics.spec import V2_0

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
DECODE_MAX_SIDE = 4096  # copies are made at the image's own size, as the probes are


def copies_of(path: Path, k: int) -> list[bytes]:
    """The image's k test-retest copies (seeded by its content, as the scorer makes them)."""
    data = path.read_bytes()
    return processing.retest_copies(data, decode_image(data, DECODE_MAX_SIDE).rgb, k)


@dataclass
class Perceived:
    face: FaceFeatures | None
    copies: list[FaceFeatures]  # the copies where the face was found
    member_names: tuple[str, ...]
    upscaled: FaceFeatures | None = None  # the image upscaled to the working size (itself when not smaller)


def perceive_all(service: PerceptionService, paths: list[Path], k: int, boxes: dict[Path, np.ndarray],
                 what: str) -> dict[Path, Perceived]:
    """Each image and its k copies through the one perception service (cached); the subject is the face
    that overlaps `boxes[path]` (S's face box) best, as the scorer picks it."""
    out: dict[Path, Perceived] = {}
    with Progress() as progress:
        task = progress.add_task(f"{what}: {len(paths)} images, {k} copies each", total=len(paths))
        for path in paths:
            box = boxes.get(path)
            f = service.perceive(path.read_bytes()).features
            face = f.primary(box) if f is not None else None
            ref_box = box if box is not None else (face.box if face is not None else None)
            cs = []
            for data in copies_of(path, k):
                cf = service.perceive(data).features
                c = cf.primary(ref_box) if cf is not None else None
                if c is not None:
                    cs.append(c)
            out[path] = Perceived(face, cs, tuple(f.member_names) if f is not None else ())
            progress.advance(task)
    service.flush()
    return out


def mean_face(p: Perceived, k: int, how: str = "mean") -> FaceFeatures | None:
    """The face with every expression field pooled (mean or median) over the image and its first k
    copies (test-time averaging); the image's own face when k is 0."""
    if p.face is None or k == 0:
        return p.face
    faces = [p.face, *p.copies[:k]]
    pool = np.mean if how == "mean" else np.median
    return replace(p.face, blendshapes=pool([f.blendshapes for f in faces], axis=0),
                   emotion=pool([f.emotion for f in faces], axis=0),
                   members=pool([f.members for f in faces], axis=0),
                   landmarks=pool([f.landmarks for f in faces], axis=0))


def projection(s: FaceFeatures, e: FaceFeatures, g: FaceFeatures, names: tuple[str, ...]) -> float:
    """<dE, dG> / |dG|^2 in 2.0's whitened space, also where 2.0 calls G degenerate (noise estimates)."""
    es, ee, eg = (core.expression(V2_0, x, names) for x in (s, e, g))
    d = eg - es
    return float(np.dot(ee - es, d) / max(float(np.dot(d, d)), 1e-12))


def rms(xs: list[float]) -> float:
    return float(math.sqrt(np.mean(np.square(xs)))) if xs else float("nan")


def perceive_sets(work: Path, k: int) -> tuple[dict, dict[Path, Perceived]]:
    sets = {}
    for part in ("blend", "wild"):
        manifest = read_manifest(work / part / "manifest.jsonl", allow_outside=True)
        rows = {}
        with open(work / part / "rows-2.0.jsonl") as fh:
            for line in fh:
                r = json.loads(line)
                rows[r["id"]] = r
        edits = {p.stem: p for p in (work / part / "edits").iterdir()}
        missing = [rid for rid in rows if rid not in edits]
        if missing:
            raise FileNotFoundError(f"{work / part / 'edits'}: no image for rows {missing[:3]}")
        sets[part] = ({t.id: t for t in manifest}, rows, edits)
    service = PerceptionService(V2_0.perception(), work / "features.sqlite")
    try:
        boxes: dict[Path, np.ndarray] = {}
        refs = sorted({t.source for m, _, _ in sets.values() for t in m.values()})
        perceived = perceive_all(service, refs, k, boxes, "sources")
        for m, _, _ in sets.values():
            for t in m.values():
                face = perceived[t.source].face
                if face is not None:
                    boxes[t.ground_truth] = face.box
        gts = sorted({t.ground_truth for m, _, _ in sets.values() for t in m.values()} - set(perceived))
        perceived.update(perceive_all(service, gts, k, boxes, "ground truths"))
        edit_paths = []
        for m, rows, edits in sets.values():
            for rid in rows:
                t = m[rid]
                face = perceived[t.source].face
                if face is not None:
                    boxes[edits[rid]] = face.box
                edit_paths.append(edits[rid])
        perceived.update(perceive_all(service, sorted(set(edit_paths) - set(perceived)), k, boxes, "edits"))
    finally:
        service.close()
    return sets, perceived


def perceive_upscaled(work: Path, perceived: dict[Path, Perceived], boxes: dict[Path, np.ndarray]) -> None:
    """Set `upscaled` on every image: perceived after a cubic upscale to the working size when it is
    smaller ("more stable perception inputs": small faces are where the gain flickers most)."""
    service = PerceptionService(V2_0.perception(), work / "features.sqlite")
    side = service.config.max_side
    try:
        with Progress() as progress:
            task = progress.add_task(f"upscaled perceptions of {len(perceived)} images", total=len(perceived))
            for path, p in perceived.items():
                rgb = decode_image(path.read_bytes(), DECODE_MAX_SIDE).rgb
                scale = side / max(rgb.shape[:2])
                if scale <= 1 or p.face is None:
                    p.upscaled = p.face
                else:
                    big = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
                    f = service.perceive(buf.tobytes()).features
                    p.upscaled = f.primary(boxes.get(path, p.face.box)) if f is not None else None
                progress.advance(task)
    finally:
        service.close()


# --- candidates --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    name: str
    average: str = "none"  # which images are perceived as the pool over themselves and k copies: none, refs, all
    pool: str = "mean"
    k: int = 0  # copies pooled per image (averaging) and read for the test-retest noise
    retest_z: float | None = None  # REG 0 when g <= z sigma_0; degenerate when z sigma_0 >= 0.5
    flat_top_z: float | None = None  # REG 1 when |g - 1| <= z sigma_1
    face_whiten: float | None = None  # per-triplet whitening: each dim's noise from S's and G's copies, x this
    reg_width: float = V2_0.reg_width  # log-gain std of REG (2.0: 0.5)
    upscale: bool = False  # perceive images smaller than the working size upscaled to it (cubic)

    def cost(self) -> int:
        """Extra perceptions per triplet: k per pooled or retested reference, k per pooled edit."""
        refs = 2 * self.k if (self.average != "none" or self.retest_z is not None or self.face_whiten) else 0
        return refs + (self.k if self.average == "all" else 0)


def candidates(k: int) -> list[Candidate]:
    out = [Candidate("2.0 (as scored)"), Candidate("upscaled to 1024 px before perception", upscale=True)]
    for kk in sorted({min(4, k), k}):
        out += [Candidate(f"retest z=2, k={kk}", k=kk, retest_z=2.0),
                Candidate(f"retest z=3, k={kk}", k=kk, retest_z=3.0),
                Candidate(f"retest z=2 + REG 1 within 1 sigma_1, k={kk}", k=kk, retest_z=2.0, flat_top_z=1.0),
                Candidate(f"retest z=2 + REG 1 within 2 sigma_1, k={kk}", k=kk, retest_z=2.0, flat_top_z=2.0),
                Candidate(f"mean of S, G and {kk} copies (E single)", "refs", k=kk),
                Candidate(f"mean of S, E, G and {kk} copies", "all", k=kk),
                Candidate(f"median of S, E, G and {kk} copies", "all", "median", k=kk),
                Candidate(f"mean of S, E, G and {kk} copies + retest z=2", "all", k=kk, retest_z=2.0),
                Candidate(f"whitened by this face's noise ({kk} copies of S, G)", k=kk, face_whiten=1.0),
                Candidate(f"whitened by 2 x this face's noise ({kk} copies of S, G)", k=kk, face_whiten=2.0),
                Candidate(f"mean of S, E, G and {kk} copies, whitened by this face's noise", "all", k=kk, face_whiten=1.0),
                Candidate(f"mean of S, E, G and {kk} copies, REG width 0.7", "all", k=kk, reg_width=0.7),
                Candidate(f"mean of S, E, G and {kk} copies, this face's noise, REG width 0.7", "all", k=kk,
                          face_whiten=1.0, reg_width=0.7)]
    return out


def apply(c: Candidate, row: dict, t, s: Perceived, e: Perceived, g: Perceived) -> dict:
    """The row under candidate c (FED = 100 REG (A F)^(1/2), F from the 2.0 row)."""
    new = dict(row)
    if c.average == "none" and c.retest_z is None and c.face_whiten is None and c.reg_width == V2_0.reg_width \
            and not c.upscale:
        return new
    names = s.member_names
    if c.upscale:  # the upscaled perceptions in place of the originals
        s, e, g = (replace(x, face=x.upscaled) for x in (s, e, g))
        if s.face is None or e.face is None or g.face is None:
            raise ValueError(f"{row['id']}: no face in an upscaled image")
    ms, mg = (mean_face(x, c.k if c.average != "none" else 0, c.pool) for x in (s, g))
    me = mean_face(e, c.k if c.average == "all" else 0, c.pool)
    ref = core.reference(V2_0, t.target, t.instruction, ms, mg, names)
    gain = projection(ms, me, mg, names)
    if c.face_whiten is not None:
        gain = face_whitened_gain(c, s, e, g, ms, me, mg, names)
    align = row["alignment"]
    if c.average != "none" or c.upscale:
        align = core.assess(V2_0, ref, ms, me, mg, core.PairMeasures(row["bg_edit_source"], row["bg_gt_source"]),
                            0.363)["alignment"]
    degenerate = ref.change.degenerate
    floor = 2.0 / ref.change.gt_change
    sigma1 = 0.0
    if c.retest_z is not None:  # the gain's own noise along this triplet's dG, from the references' copies
        sigma0 = rms([projection(s.face, x, g.face, names) for x in s.copies[:c.k]])
        sigma1 = rms([projection(s.face, x, g.face, names) - 1.0 for x in g.copies[:c.k]])
        degenerate = degenerate or c.retest_z * sigma0 >= 0.5
        floor = max(floor, c.retest_z * sigma0)
    if degenerate:
        reg = None
    elif gain <= floor:
        reg = 0.0
    elif c.flat_top_z is not None and abs(gain - 1.0) <= c.flat_top_z * sigma1:
        reg = 1.0
    else:
        reg = reg_score(gain, c.reg_width)
    new.update(status="degenerate_gt" if degenerate else "ok", reg=reg, alignment=align, gain=gain,
               fed=None if reg is None else 100.0 * reg * math.sqrt(max(0.0, align * row["fidelity"])))
    return new


def face_whitened_gain(c: Candidate, s: Perceived, e: Perceived, g: Perceived, ms: FaceFeatures, me: FaceFeatures,
                       mg: FaceFeatures, names: tuple[str, ...]) -> float:
    """The gain with each dim whitened by its population noise and this face's own: the copies of S and of
    G, in 2.0's noise units, give a per-dim mean square change; w_d = 1 / sqrt(1 + f^2 msq_d)."""
    def vec(x: FaceFeatures) -> np.ndarray:
        return core.expression(V2_0, x, names)
    moves = [vec(x) - vec(s.face) for x in s.copies[:c.k]] + [vec(x) - vec(g.face) for x in g.copies[:c.k]]
    w = 1.0 / np.sqrt(1.0 + (c.face_whiten ** 2) * np.mean(np.square(moves), axis=0))
    es, ee, eg = vec(ms) * w, vec(me) * w, vec(mg) * w
    d = eg - es
    return float(np.dot(ee - es, d) / max(float(np.dot(d, d)), 1e-12))


def analyse(sets: dict, perceived: dict[Path, Perceived], k: int) -> dict:
    from fedscore_v2_dev import evaluate  # the same checks as 2.0's evidence

    check = []
    usable: dict[tuple[str, str], tuple] = {}
    for part, (m, rows, edits) in sets.items():
        for rid, row in rows.items():
            t = m[rid]
            s, g, e = perceived[t.source], perceived[t.ground_truth], perceived[edits[rid]]
            if s.face is None or g.face is None or e.face is None or row["status"] not in ("ok", "degenerate_gt"):
                continue
            usable[(part, rid)] = (t, s, e, g)
            if row["gain"] is not None:
                check.append(abs(projection(s.face, e.face, g.face, s.member_names) - row["gain"]))
    if check and max(check) > 1e-5:
        raise RuntimeError(f"recomputed single-perception gains differ from the 2.0 rows by up to {max(check):.3g}: "
                           "the rows are stale; rerun benchmarks/fedscore_v2_dev.py --versions 2.0")
    results = {}
    for c in candidates(k):
        scored = {}
        for part, (m, rows, _) in sets.items():
            by_probe: dict[str, dict[str, dict]] = {}
            for rid, row in rows.items():
                probe, tid = rid.split("__", 1)
                new = apply(c, row, *usable[(part, rid)]) if (part, rid) in usable else dict(row)
                by_probe.setdefault(probe, {})[tid] = new
            scored[part] = by_probe
        r = evaluate(scored["blend"], scored["wild"])
        r["losers_to_rivals"] = first_failures(scored["blend"])
        results[c.name] = {"extra_perceptions_per_triplet": c.cost(), **r}
    return {"candidates": results}


def first_failures(blend: dict[str, dict[str, dict]]) -> list[str]:
    """processed-oracle copies that do not rank strictly first: 'copy/triplet < rival'."""
    ok = [i for i, r in blend["oracle"].items() if r["status"] == "ok"]
    oracles = [p for p in blend if p.startswith("processed-oracle")]
    rivals = [p for p in blend if p not in ("oracle", *oracles)]
    fed = lambda p, i: -1.0 if blend[p][i]["fed"] is None else blend[p][i]["fed"]  # noqa: E731
    out = []
    for p in oracles:
        for i in ok:
            best = max(rivals, key=lambda q: fed(q, i))
            if fed(p, i) <= fed(best, i):
                out.append(f"{p}/{i} {fed(p, i):.1f} <= {best} {fed(best, i):.1f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_v2_dev"))
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fedscore_v21_dev.json")
    args = ap.parse_args()
    # The copies' perceptions are in the feature cache; this pickle only skips remaking the copies. It is
    # keyed by the rows it was made for, so rescored rows are never read against old perceptions.
    rows_hash = hashlib.sha256(b"".join((args.work / p / "rows-2.0.jsonl").read_bytes() for p in ("blend", "wild")))
    pkl = args.work / f"v21_perceived_{args.copies}_{rows_hash.hexdigest()[:12]}.pkl"
    if pkl.is_file():
        sets, perceived = pickle.loads(pkl.read_bytes())
    else:
        sets, perceived = perceive_sets(args.work, args.copies)
        pkl.write_bytes(pickle.dumps((sets, perceived)))
    boxes = {}
    for m, _, edits in sets.values():
        for rid, t in m.items():
            face = perceived[t.source].face
            if face is not None:
                boxes.update({t.ground_truth: face.box, edits[rid]: face.box})
    perceive_upscaled(args.work, perceived, boxes)
    out = analyse(sets, perceived, args.copies)
    out["command"] = "PYTHONPATH=src python benchmarks/fedscore_v21_dev.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(out["candidates"]))


def markdown(results: dict) -> str:
    """The table docs/fedscore.md quotes."""
    head = ("| candidate | extra perceptions per triplet | blend: processed S max FED (<= 5) | blend: processed G min FED "
            "(>= 90) | blend: processed G strictly first | blend: oracle first | blend: degenerate_gt | wild: processed "
            "S max FED (<= 5) | wild: processed G min / median FED (>= 90) | wild: G = processed S degenerate | "
            "blend: median gain warp 0.5 / 1 / 2 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for name, r in results.items():
        b, w, n = r["blend"], r["wild_warp"], r["wild_noise"]
        warp = " / ".join(f"{v:.3f}" for v in b["median_gain_warp"].values())
        lines.append(f"| {name} | {r['extra_perceptions_per_triplet']} | {b['processed_lazy_max_fed']:.2f} | "
                     f"{b['processed_oracle_min_fed']:.2f} | {b['processed_oracle_first']} | {b['oracle_first']} | "
                     f"{len(b['degenerate_gt'])} | {w['processed_lazy_max_fed']:.2f} | {w['processed_oracle_min_fed']:.2f} / "
                     f"{w['processed_oracle_median_fed']:.2f} | {n['degenerate_gt']}/{n['of']} | {warp} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
