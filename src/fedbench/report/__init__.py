"""Reports on top of run folders: a static HTML page (`html`), tables for papers and scripts
(`tables`), and the paired comparison of two runs (`compare`). See docs/report.md."""
