"""Loading sources: shapes of YAML, kustomize, URLs with checksums, and the errors users see."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from manifests.sources import LOCAL_FILE_HINT, ManifestError, UrlSource, detect_version, load_source, parse_documents

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: profiles-deployment, namespace: kubeflow}
spec:
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec:
      containers:
      - {name: manager, image: "ghcr.io/kubeflow/kubeflow/profile-controller:v1.10.0"}
"""


def test_empty_documents_are_dropped_and_lists_flattened():
    text = "---\n---\n" + DEPLOYMENT + "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMapList, items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: b}}]}\n"
    objects = parse_documents(text, "kubeflow.yaml")
    assert [o["metadata"]["name"] for o in objects] == ["profiles-deployment", "a", "b"]


def test_corrupt_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "kubeflow.yaml"
    path.write_text(DEPLOYMENT + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n")
    with pytest.raises(ManifestError) as error:
        load_source(path)
    assert f"{path}:14" in str(error.value) or f"{path}:15" in str(error.value)


def test_a_document_that_is_not_an_object_is_refused():
    with pytest.raises(ManifestError, match="expected a Kubernetes object"):
        parse_documents("- just\n- a list\n", "x.yaml")
    with pytest.raises(ManifestError, match="metadata.name"):
        parse_documents("apiVersion: v1\nkind: ConfigMap\n", "x.yaml")


def test_missing_file_says_how_to_point_at_a_local_copy(tmp_path):
    with pytest.raises(ManifestError) as error:
        load_source(tmp_path / "nope.yaml")
    assert "no such file" in str(error.value) and LOCAL_FILE_HINT in str(error.value)


def test_directory_is_read_in_sorted_order_with_a_stable_checksum(tmp_path):
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (tmp_path / "a.yaml").write_text(DEPLOYMENT)
    (tmp_path / "notes.txt").write_text("ignored")
    first = load_source(tmp_path)
    assert [o["metadata"]["name"] for o in first.objects] == ["profiles-deployment", "b", "c"]
    assert load_source(tmp_path).sha256 == first.sha256
    assert first.version == "1.10.0"


@pytest.mark.skipif(not (shutil.which("kubectl") or shutil.which("kustomize")), reason="needs kubectl or kustomize")
def test_kustomize_directory_is_rendered(tmp_path):
    (tmp_path / "deployment.yaml").write_text(DEPLOYMENT)
    (tmp_path / "kustomization.yaml").write_text("resources: [deployment.yaml]\nnamespace: ml\n")
    loaded = load_source(tmp_path)
    assert [o["metadata"]["namespace"] for o in loaded.objects] == ["ml"]


def test_kustomize_without_a_renderer_names_both_tools(tmp_path, monkeypatch):
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ManifestError) as error:
        load_source(tmp_path)
    assert "kubectl kustomize" in str(error.value) and "kustomize build" in str(error.value)


@contextlib.contextmanager
def serving(directory: Path):
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(directory))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_is_downloaded_once_into_the_cache(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "kubeflow-v1.10.2.yaml").write_text(DEPLOYMENT)
    checksum = hashlib.sha256(DEPLOYMENT.encode()).hexdigest()
    cache = tmp_path / "cache"
    with serving(served) as base:
        loaded = load_source({"url": f"{base}/kubeflow-v1.10.2.yaml", "sha256": checksum}, cache_dir=cache)
    assert (cache / f"{checksum}.yaml").is_file()
    assert loaded.version == "1.10.2" and "release URL" in loaded.version_evidence
    # the server is gone: the cached copy answers
    again = load_source(UrlSource(f"{base}/kubeflow-v1.10.2.yaml", checksum), cache_dir=cache)
    assert again.sha256 == checksum


def test_checksum_mismatch_shows_expected_and_actual(tmp_path):
    (tmp_path / "kubeflow.yaml").write_text(DEPLOYMENT)
    expected = "0" * 64
    actual = hashlib.sha256(DEPLOYMENT.encode()).hexdigest()
    with serving(tmp_path) as base, pytest.raises(ManifestError) as error:
        load_source({"url": f"{base}/kubeflow.yaml", "sha256": expected}, cache_dir=tmp_path / "cache")
    assert expected in str(error.value) and actual in str(error.value)
    assert not (tmp_path / "cache" / f"{expected}.yaml").exists()


def test_offline_without_a_cached_copy_says_how_to_use_a_local_file(tmp_path):
    with serving(tmp_path) as base:
        url = f"{base}/kubeflow.yaml"
    with pytest.raises(ManifestError) as error:
        load_source({"url": url, "sha256": "a" * 64}, cache_dir=tmp_path / "cache")
    assert LOCAL_FILE_HINT in str(error.value) and "a" * 64 in str(error.value)


def test_malformed_url_source_lists_every_problem():
    with pytest.raises(ManifestError) as error:
        load_source({"sha256": "xyz", "mirror": True}, cache_dir=".")
    keys = [problem.where for problem in error.value.problems]
    assert keys == ["kubeflow.manifests.url", "kubeflow.manifests.sha256", "kubeflow.manifests"]


def test_version_is_unknown_without_evidence():
    assert detect_version([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]) == (None, None)
