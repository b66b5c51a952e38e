import hashlib
import http.server
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
        assert len(a.sha256) == 64 and a.licence and isinstance(a.source, store.WheelMember)
