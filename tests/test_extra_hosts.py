"""Every host the stack serves logs in and routes like the first (dns.extraHosts): oauth2-proxy's cookies cover
every host, and the paths Kubeflow's controllers route on one host only are redirected to it."""

from __future__ import annotations

import pytest

from analysis import trace as t
from analysis import trace_matrix
from manifests import auth_proxy
from tests.plans import evaluated_plan


def _config_map(plan, name="oauth2_proxy.cfg") -> str:
    model = t.model_from_plan(plan)
    return next(v for c in model.kind("ConfigMap") for k, v in (c.get("data") or {}).items() if k == name)


@pytest.mark.parametrize(("hosts", "domain"), [
    (("kubeflow.ml.example.com",), None),
    (("kubeflow.ml.example.com", "pipelines.ml.example.com"), ".ml.example.com"),
    (("ml.example.com", "pipelines.ml.example.com"), ".ml.example.com"),
    (("kubeflow.a.example.com", "kubeflow.b.example.com"), ".example.com"),
])
def test_the_cookie_domain_is_the_longest_parent_every_host_shares(hosts, domain):
    assert auth_proxy.shared_cookie_domain(hosts) == domain


def test_prod_logs_in_on_its_second_host_with_cookies_for_both():
    plan = evaluated_plan("prod")[0]
    config = _config_map(plan)
    assert 'cookie_domains = [".ml.example.com"]' in config
    assert 'redirect_url = "https://kubeflow.ml.example.com/oauth2/callback"' in config
    assert 'whitelist_domains = ["kubeflow.ml.example.com", "pipelines.ml.example.com"]' in config


def test_dev_with_one_host_keeps_host_only_cookies():
    assert "cookie_domains" not in _config_map(evaluated_plan("dev")[0])


def test_notebooks_on_the_second_host_are_redirected_to_the_first_and_reach_the_notebook():
    model = t.model_from_plan(evaluated_plan("prod")[0])
    first, second = model.settings.hosts[:2]
    owner = t.browser(model.profiles()["alice"])
    traced = t.trace_request(model, f"https://{second}/notebook/alice/{t.TRACE_NOTEBOOK}/", owner)
    assert traced.reached and t.TRACE_NOTEBOOK in traced.backend, t.render(traced)
    assert any(h.step == "redirect" and f"https://{first}/notebook/alice/" in h.why for h in traced.hops)


def test_without_the_redirect_the_trace_table_reports_the_notebook_on_the_second_host():
    # The notebook controller routes only ISTIO_HOST: the path would fall to the dashboard's catch-all route,
    # which the table must call a failure, not "reached".
    model = t.model_from_plan(evaluated_plan("prod")[0])
    objects = [o for o in model.objects if (o.get("metadata") or {}).get("name") != "kubeflow-extra-host-redirects"]
    cells = trace_matrix.matrix(t.MeshModel(objects, model.settings))
    second = model.settings.hosts[1]
    owner = next(c for c in cells if c.row.host == second and c.row.kind == "notebook" and c.caller_kind == "owner")
    assert owner.trace.reached and "centraldashboard" in owner.trace.backend
    assert not owner.ok
    assert any(second in problem for problem in trace_matrix.problems(cells))
