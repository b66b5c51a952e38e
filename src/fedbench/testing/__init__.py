"""Helpers for fedbench's own tests and benchmarks: NOT part of scoring, never a source of results.

- `fedbench.testing.tiny_pipeline`: a tiny random InstructPix2Pix pipeline built offline (exercises the
  diffusers adapter and LoRA training; needs the `diffusers` extra).
- `fedbench.testing.synthetic_runs`: run folders of INVENTED rows for the report's tests and for sizing
  reports (`benchmarks/report_size.py`); their summary says `"synthetic": true`.
- `fedbench.testing.probe_files`: pixel-blend probe images written to disk as a test's edits folder.
- `fedbench.testing.build_settings`: the loose verification thresholds of test builds whose ground
  truths come from the `warp` editor.

They live in the package (not under tests/) because the benchmarks in benchmarks/ use them too.
Nothing in the scoring, meta or report code imports this package.
"""
