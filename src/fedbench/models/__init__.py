"""Model store: named weight artifacts, where to get them, and their checksums."""

from fedbench.models.store import (
    ARTIFACTS,
    Artifact,
    ArtifactError,
    LocalFile,
    UrlSource,
    WheelMember,
    artifact_path,
    get_artifact,
    pull,
    verify,
)

__all__ = [
    "ARTIFACTS", "Artifact", "ArtifactError", "LocalFile", "UrlSource", "WheelMember",
    "artifact_path", "get_artifact", "pull", "verify",
]
