"""A release is identified from several components at once, against the table of known releases."""

from __future__ import annotations

import pytest

from manifests.contracts import SOURCE
from manifests.objects import clone, containers_of, pod_template
from manifests.release_identity import identify, judge, release_key, release_table
from tests.upstream import upstream_objects

RELEASES = ("1.9.1", "1.10.2", "1.11.0", "26.03")


@pytest.mark.parametrize("release", RELEASES)
def test_each_rendered_release_is_identified_as_itself_alone(release):
    identity = identify(upstream_objects(release))
    assert identity.candidates == (release,)
    verdict = judge(release, identity)
    assert verdict.problems == () and verdict.warnings == ()


@pytest.mark.parametrize("release", RELEASES)
def test_the_table_holds_what_each_rendered_release_ships(release):
    known = release_table().named(release)
    found = {name: version for name, (version, _) in identify(upstream_objects(release)).found.items()}
    assert found == dict(known.components)
    assert all(SOURCE.match(source) and f"@{'v' if release.startswith('1.') else ''}{release} " in source
               for source in known.sources.values())


def test_one_components_tag_is_not_the_release():
    # v1.11.0 and 26.03 ship the dashboard of 1.10.0; the release is still told apart.
    assert identify(upstream_objects("1.11.0")).found["dashboard"][0] == "v1.10.0"
    verdict = judge("1.11.0", identify(upstream_objects("1.11.0")))
    assert verdict.problems == ()


@pytest.mark.parametrize("manifests,pinned", [("26.03", "1.10.2"), ("1.11.0", "1.10.2"), ("1.10.2", "26.03"),
                                              ("1.10.2", "1.10.1")])
def test_a_known_release_other_than_the_pinned_one_is_refused_naming_both(manifests, pinned):
    (problem,) = judge(pinned, identify(upstream_objects(manifests))).problems
    assert f"holds Kubeflow {manifests} (" in problem.message and f"not kubeflow.version {pinned}" in problem.message
    assert f'set kubeflow.version to "{manifests}"' in problem.fix


def _bumped(release: str, tags: dict[str, str]) -> list[dict]:
    """The release's objects with some components' image tags replaced (repository last part -> tag)."""
    objects = []
    for obj in upstream_objects(release):
        template = pod_template(obj)
        if template is not None and any(
            str(c.get("image", "")).split("@")[0].rpartition(":")[0].rsplit("/", 1)[-1] in tags
            for c in containers_of(template.get("spec") or {})
        ):
            obj = clone(obj)
            for container in containers_of(pod_template(obj).get("spec") or {}):
                repository = str(container.get("image", "")).split("@")[0].rpartition(":")[0]
                if repository.rsplit("/", 1)[-1] in tags:
                    container["image"] = f"{repository}:{tags[repository.rsplit('/', 1)[-1]]}"
        objects.append(obj)
    return objects


def test_a_release_newer_than_every_known_one_is_accepted_with_what_could_not_be_verified():
    newer = identify(_bumped("26.03", {"kfp-api-server": "2.17.0", "central-dashboard": "v1.11.0"}))
    assert newer.candidates == () and newer.newer
    verdict = judge("26.09", newer)
    assert verdict.problems == ()
    (warning,) = verdict.warnings
    assert "newer than every release this program knows" in warning
    assert "pipelines 2.17.0 (newest known: 2.16.0)" in warning and "dashboard v1.11.0 (newest known: v1.10.0)" in warning
    # The same manifests pinned as a known release are refused.
    (problem,) = judge("26.03", newer).problems
    assert "newer than every known one" in problem.message


def test_mixed_or_older_components_match_no_release_and_are_refused():
    mixed = identify(_bumped("1.10.2", {"katib-controller": "v0.19.0"}))
    assert mixed.candidates == () and not mixed.newer
    (problem,) = judge("1.10.2", mixed).problems
    assert "match no known release" in problem.message and "closest is 1.10.2" in problem.message
    assert "katib v0.19.0 (it ships v0.18.0)" in problem.message


def test_manifests_without_a_known_component_are_taken_on_trust_with_a_warning():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}}
    verdict = judge("1.10.2", identify([namespace]))
    assert verdict.problems == () and "could not be identified" in verdict.warnings[0]


def test_calendar_releases_are_newer_than_the_semantic_ones():
    assert sorted(["26.03", "1.11.0", "1.9.1", "1.10.2", "26.03.1"], key=release_key) == \
        ["1.9.1", "1.10.2", "1.11.0", "26.03", "26.03.1"]


def test_the_program_applies_v1_11_0_pinned_as_1_11_0_and_exports_the_evidence():
    from tests.conftest import _stack_kubeflow, shared_run
    from tests.upstream import manifests_path

    # With static object-store keys, which KFP 2.15.0's API server needs (docs/releases.md).
    kubeflow = dict(_stack_kubeflow("dev"), objectStore={"staticKeys": True})
    kubeflow.update(version="1.11.0", manifests=str(manifests_path("1.11.0")))
    run = shared_run("dev", {"kubeflow": kubeflow})
    assert run.exports["kubeflowVersion"] == "1.11.0"
    identity = run.exports["transformReport"]["releaseIdentity"]
    assert identity["identifiedAs"] == ["1.11.0"] and identity["warnings"] == []
    assert identity["components"]["pipelines"]["version"] == "2.15.0"
    assert "ghcr.io/kubeflow/kfp-api-server:2.15.0" in identity["components"]["pipelines"]["evidence"]
