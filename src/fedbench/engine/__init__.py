"""The build engine: a cascaded, verified pipeline from raw face footage to triplets and training
pairs, on a local process pool or on Ray.

    >>> from fedbench.engine import build, BuildConfig
    >>> result = build(["photos/", "clips/a.mp4"], "built/", BuildConfig(per_class=110))
"""

from fedbench.engine.config import BuildConfig
from fedbench.engine.pipeline import BuildFolderError, BuildResult, build

__all__ = ["BuildConfig", "BuildFolderError", "BuildResult", "build"]
