"""Finding the edited image of each triplet: `<edits>/<id>.<png|jpg|jpeg|webp|avif>`."""

from __future__ import annotations

from pathlib import Path

from fedbench.data.manifest import ManifestError, Problem, Triplet

EDIT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".avif")
# Found too, so that the row says "unsupported format" (from the decoder) instead of "no edited image".
UNSUPPORTED_EDIT_EXTENSIONS = (".gif",)


def find_edits(edits_dir: Path, triplets: list[Triplet]) -> dict[str, Path | None]:
    """Map each id to its edited file (None when missing). Two files for one id is an error."""
    edits_dir = Path(edits_dir)
    if not edits_dir.is_dir():
        raise ManifestError(edits_dir, [Problem(0, "the edits folder does not exist")])
    by_stem: dict[str, list[Path]] = {}
    unsupported: dict[str, Path] = {}
    for p in edits_dir.iterdir():
        if p.suffix.lower() in EDIT_EXTENSIONS and p.is_file():
            by_stem.setdefault(p.stem, []).append(p)
        elif p.suffix.lower() in UNSUPPORTED_EDIT_EXTENSIONS and p.is_file():
            unsupported[p.stem] = p
    for stem, p in unsupported.items():  # only where no supported file exists: a stray preview changes nothing
        by_stem.setdefault(stem, [p])
    problems = [
        Problem(t.row, f"several edited files for one id: {', '.join(sorted(x.name for x in by_stem[t.id]))}", t.id)
        for t in triplets
        if len(by_stem.get(t.id, [])) > 1
    ]
    if problems:
        raise ManifestError(edits_dir, problems)
    return {t.id: (by_stem[t.id][0] if t.id in by_stem else None) for t in triplets}
