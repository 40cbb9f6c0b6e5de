"""Writing a plan directory over the previous preview's: the same files as a fresh write, and only what changed."""

from __future__ import annotations

import os
from pathlib import Path

from tests.plans import config_group_plan
from tools.plan import MANIFESTS_DIR, PLAN_FILE, write_plan_dir


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _plan(replicas: int) -> dict:
    return config_group_plan([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "kubeflow"},
         "data": {"note": "a: b\nc # d\n", "mode": "yes"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "kubeflow"},
         "spec": {"replicas": replicas}},
    ])


def test_writing_over_a_previous_output_gives_a_fresh_writes_files(tmp_path: Path) -> None:
    previous, fresh = tmp_path / "previous", tmp_path / "fresh"
    write_plan_dir(_plan(1), previous)
    manifests = previous / MANIFESTS_DIR
    (manifests / "99-configgroup-removed.yaml").write_text("kind: Gone\n")  # a group the new plan no longer has
    (manifests / "notes.txt").write_text("mine")  # not the preview's: left alone
    kept = [p for p in manifests.glob("*.yaml") if p.name != "99-configgroup-removed.yaml"]
    os.utime(kept[0], ns=(1, 1))

    write_plan_dir(_plan(3), previous)
    write_plan_dir(_plan(3), fresh)

    assert {k: v for k, v in _files(previous).items() if not k.endswith("notes.txt")} == _files(fresh)
    assert not (manifests / "99-configgroup-removed.yaml").exists()
    assert (manifests / "notes.txt").read_text() == "mine"
    assert b"replicas: 3" in (manifests / kept[0].name).read_bytes()  # changed bytes are written
    assert b'"replicas": 3' in (previous / PLAN_FILE).read_bytes()


def test_a_file_already_holding_the_same_bytes_is_not_written_again(tmp_path: Path) -> None:
    write_plan_dir(_plan(1), tmp_path)
    manifest = next((tmp_path / MANIFESTS_DIR).glob("*.yaml"))
    os.utime(manifest, ns=(1, 1))
    os.utime(tmp_path / PLAN_FILE, ns=(1, 1))
    write_plan_dir(_plan(1), tmp_path)
    assert manifest.stat().st_mtime_ns == 1
    assert (tmp_path / PLAN_FILE).stat().st_mtime_ns == 1


def _two_groups(replicas: int) -> dict:
    """Two ConfigGroups: `web`'s Deployment has `replicas`, `settings` never changes."""
    plan = _plan(replicas)
    group = plan["resources"][1]
    settings = {**group, "name": "settings", "urn": group["urn"].replace("::kubeflow", "::settings"),
                "inputs": {"objs": group["inputs"]["objs"][:1]}}
    group["inputs"] = {"objs": group["inputs"]["objs"][1:]}
    plan["resources"].append(settings)
    return plan


def _emitted(monkeypatch) -> list[str]:
    """The files whose YAML is written out from here on, by the header each gets."""
    import tools.plan as plan_module

    emitted: list[str] = []
    original = plan_module.manifests_yaml

    def counting(objects, writer=None):
        emitted.append(objects[0].source)
        return original(objects, writer)

    monkeypatch.setattr(plan_module, "manifests_yaml", counting)
    return emitted


def test_a_groups_file_is_written_again_only_when_its_group_or_the_file_changed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KUBEFLOW_PLATFORM_CACHE_DIR", str(tmp_path / "cache"))
    previous, fresh = tmp_path / "previous", tmp_path / "fresh"
    write_plan_dir(_two_groups(1), previous)
    emitted = _emitted(monkeypatch)

    write_plan_dir(_two_groups(1), previous)
    assert emitted == []  # nothing changed: no group's YAML written out again
    write_plan_dir(_two_groups(3), previous)
    assert emitted == ["ConfigGroup kubeflow"]  # only the changed group's
    write_plan_dir(_two_groups(3), fresh)
    assert _files(previous) == _files(fresh)

    # A file edited since it was written (or a cache that does not read back) is written out and compared again.
    edited = next(p for p in (previous / MANIFESTS_DIR).glob("*settings.yaml"))
    edited.write_text("# edited by hand\n")
    emitted.clear()
    write_plan_dir(_two_groups(3), previous)
    assert emitted == ["ConfigGroup settings"] and _files(previous) == _files(fresh)
    (tmp_path / "cache" / "previews" / "manifests.json").write_text("{not json")
    emitted.clear()
    write_plan_dir(_two_groups(3), previous)
    assert sorted(emitted) == ["ConfigGroup kubeflow", "ConfigGroup settings"] and _files(previous) == _files(fresh)

    # What is kept is by content, in the user's cache: another directory's file of the same name, whatever it holds,
    # is the preview's own only when it holds exactly what the group is written as.
    other = tmp_path / "other"
    (other / MANIFESTS_DIR).mkdir(parents=True)
    (other / MANIFESTS_DIR / edited.name).write_text("# not what the plan applies\n")
    write_plan_dir(_two_groups(3), other)
    assert _files(other) == _files(fresh)
