"""The parsed-manifests cache: a warm load skips the parse; anything stale or damaged is parsed again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manifests import parse_cache, yaml_loader
from manifests.release import CACHE_DIR_VARIABLE, cache_root, parsed_cache_dir
from manifests.sources import load_source

DOCUMENT = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: kubeflow}}\ndata: {{key: 'value {i}', n: '{i}'}}\n"


def large_stream(count: int = 4000) -> bytes:
    data = "---\n".join(DOCUMENT.format(i=i) for i in range(count)).encode()
    assert len(data) >= parse_cache.MIN_CACHED_BYTES
    return data


def test_a_second_load_comes_from_the_cache_and_is_equal(tmp_path, monkeypatch):
    data = large_stream()
    first = parse_cache.load_all(data, tmp_path)
    assert parse_cache.entry_path(tmp_path, data).is_file()
    expected = yaml_loader.load_all(data)

    def refuse(data):
        raise AssertionError("parsed although a valid cache entry exists")

    monkeypatch.setattr(yaml_loader, "load_all", refuse)
    second = parse_cache.load_all(data, tmp_path)
    assert second == first == expected
    assert second is not first  # a fresh tree: callers may keep it without sharing


@pytest.mark.parametrize("damage", ["flip a payload byte", "truncate", "garbage", "empty", "other magic"])
def test_a_damaged_entry_is_parsed_again_and_replaced(tmp_path, damage):
    data = large_stream()
    expected = parse_cache.load_all(data, tmp_path)
    entry = parse_cache.entry_path(tmp_path, data)
    blob = bytearray(entry.read_bytes())
    if damage == "flip a payload byte":
        blob[-100] ^= 0x40
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "garbage":
        blob = bytearray(os.urandom(len(blob)))
    elif damage == "empty":
        blob = bytearray()
    else:
        blob[:4] = b"XXXX"
    entry.write_bytes(bytes(blob))
    assert parse_cache.load_all(data, tmp_path) == expected
    assert parse_cache.load_all(data, tmp_path) == expected  # the rewritten entry is good again


def test_an_entry_from_another_loader_version_is_not_used(tmp_path, monkeypatch):
    data = large_stream()
    parse_cache.load_all(data, tmp_path)
    monkeypatch.setattr(parse_cache, "_content_key", lambda: b"\0" * 32)
    parsed = []
    original = yaml_loader.load_all
    monkeypatch.setattr(yaml_loader, "load_all", lambda d: parsed.append(1) or original(d))
    assert parse_cache.load_all(data, tmp_path) == original(data)
    assert parsed == [1]


def test_a_changed_file_is_a_different_entry(tmp_path):
    data = large_stream()
    changed = data.replace(b"value 7'", b"value seven'")
    assert parse_cache.load_all(data, tmp_path) != parse_cache.load_all(changed, tmp_path)
    assert len(list(tmp_path.glob("*.marshal"))) == 2


def test_an_unwritable_cache_directory_only_costs_the_parse(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    data = large_stream()
    assert parse_cache.load_all(data, blocker / "cache") == yaml_loader.load_all(data)


def test_small_streams_and_values_marshal_cannot_hold_are_not_cached(tmp_path):
    small = DOCUMENT.format(i=1).encode()
    assert parse_cache.load_all(small, tmp_path) == yaml_loader.load_all(small)
    dated = large_stream().replace(b"n: '7'", b"n: 2024-01-01", 1)
    assert parse_cache.load_all(dated, tmp_path) == yaml_loader.load_all(dated)
    assert list(tmp_path.iterdir()) == []


def test_loading_a_source_uses_the_cache_it_is_given(tmp_path):
    source = tmp_path / "kubeflow.yaml"
    source.write_bytes(large_stream())
    cache = tmp_path / "parsed"
    first = load_source(source, parsed_cache=cache)
    assert len(list(cache.glob("*.marshal"))) == 1
    second = load_source(source, parsed_cache=cache)
    assert second == first


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    assert parsed_cache_dir() == tmp_path / "elsewhere" / "parsed"
    monkeypatch.delenv(CACHE_DIR_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert parsed_cache_dir() == Path(tmp_path / "xdg" / "kubeflow-platform" / "parsed")
