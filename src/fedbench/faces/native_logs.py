"""Keep the console for progress: the C++ runtimes (MediaPipe, TFLite/LiteRT) print set-up messages
at every model load and first inference straight to file descriptor 2, before any Python logging
setting can reach them. `filtered_native_stderr` captures fd 2 around those calls and passes on every
line that is not one of the known set-up messages, so real errors still show."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

NATIVE_NOISE = re.compile(
    r"Logging before InitGoogle|face_landmarker_graph\.cc|inference_feedback_manager\.cc|"
    r"XNNPACK delegate|gl_context|All log messages before absl::InitializeLog")


@contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Capture fd 2 while MediaPipe loads or first runs; pass on every line that is not known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines(keepends=True)
                    if not NATIVE_NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
