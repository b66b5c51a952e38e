"""fedbench: FED-Bench for instruction-driven facial-expression editing.

    >>> import fedbench
    >>> result = fedbench.score("triplets.jsonl", "edited/")
    >>> result.summary["overall"]["fed"]
"""

from fedbench._telemetry import disable_openvino_telemetry

disable_openvino_telemetry()  # before anything imports openvino: no usage counter in ~/intel (see _telemetry)

from fedbench.labels import EXPRESSIONS  # noqa: E402
from fedbench.metrics.fedscore import FEDSCORE_VERSION  # noqa: E402

__version__ = "0.1.0"


def score(*args, **kwargs):  # noqa: D103 - documented on the runner
    from fedbench.scoring.runner import score as _score

    return _score(*args, **kwargs)


score.__doc__ = "Score edited images against a triplet manifest; see fedbench.scoring.runner.score."

__all__ = ["EXPRESSIONS", "FEDSCORE_VERSION", "__version__", "score"]
