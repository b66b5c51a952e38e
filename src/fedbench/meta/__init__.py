"""The meta-evaluation of FED-Score (`fedbench meta`): probes, the bias of single metrics, graded
sequences, recogniser accuracy and agreement with human ratings (fedscore.md, last section)."""

from fedbench.meta.probes import Probe, default_probes
from fedbench.meta.run import MetaOptions, read_probe_rows, run_meta

__all__ = ["MetaOptions", "Probe", "default_probes", "read_probe_rows", "run_meta"]
