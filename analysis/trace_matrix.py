"""Who must reach which Kubeflow path, as data the preview and the tests share, and the matrix of traces over a plan.

Rows: every path the central Gateway routes (one per prefix of the VirtualServices its pods are given) and, per
profile, the notebook server the notebook controller would route at `/notebook/<profile>/<name>/`. Columns: kinds of
caller, relative to a profile: its owner, an edit and a view contributor (kfam's policies in the plan), a logged-in
stranger, that stranger sending `kubeflow-userid: <owner>` (forged), anonymous, each extra issuer's machine token
(with the required claims) and a token of the same issuer without them, and another profile's workload calling the
backend directly with `kubeflow-userid: <owner>`.

Expectations (EXPECTED below):
- Kubeflow's web apps in `kubeflow` (dashboard, pipelines, Jupyter, Katib, volumes, tensorboards, models, ML
  Metadata): every logged-in user and machine identity reaches them (the apps authorize per namespace themselves:
  SubjectAccessReview); anonymous callers, foreign tokens and other profiles' workloads do not.
- A profile's notebook: its owner and contributors reach it, edit and view alike (kfam writes one policy for both,
  kubeflow/kubeflow@v1.10.0 components/access-management/kfam/bindings.go:88), a machine identity only where a profile
  grants its user; strangers, forged headers, anonymous callers and other workloads do not.
- `/kfam/`: routed by upstream but closed to the gateway (kfam's policy admits only the central dashboard, which calls it
  in-mesh: kubeflow/kubeflow@v1.10.0 components/access-management/manifests/base/istio-authorization-policy.yaml); nobody
  reaches it through the gateway.
- `/oauth2/`: the auth proxy's own login endpoints; everyone reaches them.

A forged header must never arrive: where the forger gets through, the backend must see the forger's own identity.

Pure Python; no Pulumi.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from analysis import trace as t
from analysis import trace_sharing
from analysis.routes import virtual_services_for_gateway

REACH, REFUSE, NA = "reach", "refuse", "-"
CALLER_KINDS = ("owner", "edit", "view", "stranger", "forged", "anonymous", "machine", "foreign-token", "other-workload")
#: Path kinds by the prefix the gateway routes; any other gateway route is taken as a Kubeflow web app.
PATH_KINDS = {"/kfam/": "kfam", "/oauth2/": "login", "/authservice/site/": "login", "/api/workgroup/create": "registration"}
#: Rows sent with another method than GET: the dashboard's profile creation (manifests/admission.py).
PATH_METHODS = {"registration": "POST"}
SELF_SERVICE = "self-service"

EXPECTED: Mapping[str, Mapping[str, str]] = {
    "web-app": {"owner": REACH, "edit": REACH, "view": REACH, "stranger": REACH, "forged": REACH, "anonymous": REFUSE,
                "machine": REACH, "foreign-token": REFUSE, "other-workload": REFUSE},
    "notebook": {"owner": REACH, "edit": REACH, "view": REACH, "stranger": REFUSE, "forged": REFUSE, "anonymous": REFUSE,
                 "machine": "grant", "foreign-token": REFUSE, "other-workload": REFUSE},
    "kfam": {kind: REFUSE for kind in CALLER_KINDS},
    # Tokens are judged at the gateway before routing: a foreign token is refused on every host path, login included.
    "login": {**{kind: REACH for kind in CALLER_KINDS}, "foreign-token": REFUSE, "other-workload": NA},
    # `POST /api/workgroup/create`, the dashboard's profile creation: refused for everyone unless self-service
    # opens it to the users of its email domains (SELF_SERVICE: by the caller's own identity's domain).
    "registration": {**{kind: SELF_SERVICE for kind in CALLER_KINDS}, "anonymous": REFUSE, "foreign-token": REFUSE,
                     "other-workload": NA},
}
STRANGER_LOCAL_PART = "trace-stranger"


@dataclass(frozen=True)
class PathRow:
    name: str
    path: str
    kind: str
    profile: str
    #: Another of the stack's hosts than the first (dns.extraHosts); None: the first.
    host: str | None = None
    method: str = "GET"

    @property
    def label(self) -> str:
        where = f"{self.host}{self.path}" if self.host else self.path
        return where if self.method == "GET" else f"{self.method} {where}"


@dataclass(frozen=True)
class Cell:
    row: PathRow
    caller_kind: str
    expected: str
    trace: t.Trace | None

    @property
    def outcome(self) -> str:
        return NA if self.trace is None else REACH if self.trace.reached else REFUSE

    @property
    def ok(self) -> bool:
        if self.trace is None or self.expected == NA:
            return True
        if self.outcome != self.expected:
            return False
        if self.row.kind == "notebook" and self.trace.reached and t.TRACE_NOTEBOOK not in (self.trace.backend or ""):
            return False  # reached, but another backend (a catch-all route took the notebook's path)
        forged = (self.trace.caller.headers or {}).get(t.MeshSettings().user_header)
        return not (self.trace.reached and forged and self.trace.user == forged and self.caller_kind == "forged")

    def problem(self) -> str | None:
        if self.ok:
            return None
        hop = self.trace.refused_at if self.trace else None
        where = f" at {hop.step} ({hop.decided_by}: {hop.why})" if hop else f" ({self.trace.backend})" if self.trace else ""
        return (f"{self.row.label} [{self.row.name}]: {self.trace.caller.label} ({self.caller_kind}) should "
                f"{self.expected} it but is {'refused' if self.outcome == REFUSE else 'let through'}{where}")


def gateway_paths(model: t.MeshModel) -> list[tuple[str, str]]:
    """(prefix, VirtualService name) for every route the central Gateway's pods are given, plan objects only."""
    settings = model.settings
    found: list[tuple[str, str]] = []
    for gateway in model.kind("Gateway"):
        selector = (gateway.get("spec") or {}).get("selector")
        if not t.labels_subset(selector, settings.gateway_labels):
            continue
        name = f"{t._ns(gateway)}/{t._name(gateway)}"
        for service in virtual_services_for_gateway(model.kind("VirtualService"), settings.gateway_namespace, name):
            if (service.get("metadata") or {}).get("annotations", {}).get("kubeflow-platform/trace-runtime"):
                continue
            for http in (service.get("spec") or {}).get("http") or []:
                if http.get("redirect"):
                    continue  # sends the browser elsewhere: the row is where it lands
                for match in http.get("match") or [{}]:
                    prefix = ((match or {}).get("uri") or {}).get("prefix") or ((match or {}).get("uri") or {}).get("exact")
                    if prefix and (prefix, t._name(service)) not in found:
                        found.append((prefix, t._name(service)))
    return found


def _probe_path(prefix: str) -> str:
    # A request under the prefix, as a browser sends one (`/pipeline` is served at `/pipeline/`).
    return prefix if prefix.endswith("/") else prefix + "/"


def rows(model: t.MeshModel, subject: str) -> list[PathRow]:
    found = []
    for prefix, service in gateway_paths(model):
        kind = PATH_KINDS.get(prefix, "web-app")
        found.append(PathRow(service, _probe_path(prefix), kind, subject, method=PATH_METHODS.get(kind, "GET")))
        if kind == "registration":
            # The dashboard's router ignores case; so must the refusal.
            found.append(PathRow(service, prefix.upper(), kind, subject, method=PATH_METHODS[kind]))
    if not any(row.kind == "registration" for row in found):
        # No route of its own: the dashboard's catch-all takes it (the row then shows who gets through).
        found.append(PathRow("dashboard", "/api/workgroup/create", "registration", subject, method="POST"))
    # Every further host the Gateway serves, through the catch-all route (the dashboard): the routes carry all hosts.
    for host in model.settings.hosts[1:]:
        found.append(PathRow("dashboard", "/", "web-app", subject, host))
        # The controllers route notebooks on one host only: every other host must still lead to the notebook.
        found.append(PathRow(f"notebook of {subject}", f"/notebook/{subject}/{t.TRACE_NOTEBOOK}/", "notebook", subject, host))
    for profile in model.profiles():
        found.append(PathRow(f"notebook of {profile}", f"/notebook/{profile}/{t.TRACE_NOTEBOOK}/", "notebook", profile))
    return found


def callers(model: t.MeshModel, profile: str) -> dict[str, t.Caller | None]:
    settings = model.settings
    owner = model.profiles()[profile]
    contributors = model.contributors(profile)
    people = [u for u, role in contributors.items() if not any(u == i.machine_user for i in settings.issuers)]
    edit = next((u for u in people if contributors[u] == "edit"), None)
    view = next((u for u in people if contributors[u] == "view"), None)
    domain = next((d.lstrip("*.").lstrip(".") for d in settings.email_domains if d != "*"), "example.com")
    stranger = f"{STRANGER_LOCAL_PART}@{domain}"
    others = [p for p in model.profiles() if p != profile]
    machine_issuer = next((i for i in settings.issuers if i.machine_user), None)
    found: dict[str, t.Caller | None] = {
        "owner": t.browser(owner, f"{owner} (owner of {profile})"),
        "edit": t.browser(edit, f"{edit} (edit on {profile})") if edit else None,
        "view": t.browser(view, f"{view} (view on {profile})") if view else None,
        "stranger": t.browser(stranger, f"{stranger} (no role in {profile})"),
        "forged": t.browser(stranger, f"{stranger} sending kubeflow-userid: {owner}", {settings.user_header: owner}),
        "anonymous": t.anonymous(),
        "machine": None,
        "foreign-token": None,
        "other-workload": t.workload(others[0], "default-editor", {"notebook-name": "x"}, {settings.user_header: owner},
                                     f"{others[0]}/default-editor sending kubeflow-userid: {owner}") if others else None,
    }
    if machine_issuer is not None:
        claims = _required_claims(model, machine_issuer.issuer)
        audience = _audience(model, machine_issuer.issuer)
        base = {"iss": machine_issuer.issuer, "aud": audience}
        # A subject shaped like GitHub's (`repo:<owner>/<repo>:ref:...`): it holds `/`, which Istio must not split.
        subject = f"repo:{claims.get('repository', 'trace/trace')}:ref:refs/heads/main"
        found["machine"] = t.token_caller(f"{machine_issuer.machine_user} (token of {machine_issuer.issuer})",
                                          {**base, "sub": subject, **claims})
        foreign = {claim: "someone-else/elsewhere" for claim in claims}
        found["foreign-token"] = t.token_caller(f"token of {machine_issuer.issuer} without its required claims",
                                                {**base, "sub": "trace-foreign", **foreign})
    return found


def _deny_rules(model: t.MeshModel) -> list[Mapping[str, Any]]:
    # Gathered once per model: asked for each caller row, and every profile adds policies to read.
    found = model.__dict__.get("_deny_rules")
    if found is None:
        found = model.__dict__["_deny_rules"] = [
            rule for p in model.kind("AuthorizationPolicy") if (p.get("spec") or {}).get("action") == "DENY"
            for rule in (p.get("spec") or {}).get("rules") or []]
    return found


def _required_claims(model: t.MeshModel, issuer: str) -> dict[str, str]:
    """The claim values the gateway's token policy requires of `issuer` (its `notValues` rules), first value each."""
    claims: dict[str, str] = {}
    for rule in _deny_rules(model):
        principals = [p for entry in rule.get("from") or [] for p in (entry.get("source") or {}).get("requestPrincipals") or []]
        if f"{issuer}/*" not in principals:
            continue
        for condition in rule.get("when") or []:
            key = str(condition.get("key", ""))
            if key.startswith("request.auth.claims[") and condition.get("notValues"):
                claims[key[len("request.auth.claims["):-1]] = str(condition["notValues"][0]).replace("*", "trace")
    return claims


def _audience(model: t.MeshModel, issuer: str) -> str:
    for policy in model.kind("RequestAuthentication"):
        for rule in (policy.get("spec") or {}).get("jwtRules") or []:
            if rule.get("issuer") == issuer and rule.get("audiences"):
                return str(rule["audiences"][0])
    return "trace"


def expected(row: PathRow, kind: str, model: t.MeshModel, caller: t.Caller | None) -> str:
    value = EXPECTED[row.kind][kind]
    if row.kind == "notebook" and kind == "view" and _viewers_read_only(model, row.profile):
        # tenancy's viewersReadOnly leaves the notebook servers out of a viewer's policy (manifests/tenancy.py).
        return REFUSE
    if value == SELF_SERVICE:
        email = caller.email if caller is not None and caller.kind == "browser" else \
            next((i.machine_user for i in model.settings.issuers if i.machine_user), None) if kind == "machine" else None
        domain = (email or "").rpartition("@")[2]
        return REACH if domain and domain in model.settings.self_service_domains else REFUSE
    if value == "grant":
        machine = next((i.machine_user for i in model.settings.issuers if i.machine_user), None)
        return REACH if machine in model.contributors(row.profile) else REFUSE
    return value


def _viewers_read_only(model: t.MeshModel, profile: str) -> bool:
    for policy in model.kind("AuthorizationPolicy"):
        annotations = (policy.get("metadata") or {}).get("annotations") or {}
        if t._ns(policy) == profile and annotations.get("role") == "view":
            operations = [e.get("operation") or {} for r in (policy.get("spec") or {}).get("rules") or [] for e in r.get("to") or []]
            return any("8888" in [str(p) for p in o.get("notPorts") or []] for o in operations)
    return False


def subject_profile(model: t.MeshModel) -> str | None:
    """The profile the web-app rows are traced against: the one with the most kinds of contributor."""
    profiles = model.profiles()
    if not profiles:
        return None
    order = {name: index for index, name in enumerate(profiles)}
    return max(profiles, key=lambda p: (len(set(model.contributors(p).values())), -order[p]))


def matrix(model: t.MeshModel, host: str | None = None, *, share: bool | None = None,
           verdicts: bool = False) -> list[Cell]:
    """Every row x caller kind, traced. The notebook rows of alike profiles are traced once and renamed for each
    (analysis/trace_sharing.py; `share=False`, or KUBEFLOW_PLATFORM_TRACE_SHARING=0, traces every one in full).
    `verdicts`: each cell's trace kept as its verdict (Trace.verdict), all that render_table and problems read; the
    hops of every profile's traces are a quarter of a gigabyte at 10,000 profiles."""
    host = host or (model.settings.hosts[0] if model.settings.hosts else "kubeflow.example.com")
    subject = subject_profile(model)
    if subject is None:
        return []
    cache: dict[str, dict[str, t.Caller | None]] = {}

    def traced(row: PathRow) -> list[Cell]:
        found = cache.setdefault(row.profile, callers(model, row.profile))
        cells = []
        for kind in CALLER_KINDS:
            caller = found[kind]
            want = expected(row, kind, model, caller)
            if caller is None or want == NA:
                cells.append(Cell(row, kind, NA, None))
                continue
            if caller.kind == "workload":
                url = _direct_url(model, row.host or host, row.path)
                if url is None:
                    cells.append(Cell(row, kind, NA, None))
                    continue
            else:
                url = f"https://{row.host or host}{row.path}"
            cells.append(Cell(row, kind, want, t.trace_request(model, url, caller, row.method)))
        return cells

    all_rows = rows(model, subject)
    # A profile's own row: its notebook on the first host. Its callers are relative to it; other rows' to the subject.
    own = {row.profile: row for row in all_rows if row.kind == "notebook" and row.host is None}
    # The subject's callers and rows, the first profile (the direct callers' probe is its owner's) and the profiles
    # whose workloads call the others' (`other-workload`) are traced on their own.
    first_two = list(model.profiles())[:2]
    keep = _verdicts if verdicts else None
    answers = trace_sharing.share(model, lambda profile: traced(own[profile]) if profile in own else [],
                                  alone={subject, *first_two}, on=share, keep=keep)
    cells: list[Cell] = []
    for row in all_rows:
        cells += answers[row.profile] if own.get(row.profile) is row else (keep or list)(traced(row))
    return cells


def _verdicts(cells: list[Cell]) -> list[Cell]:
    return [replace(cell, trace=cell.trace.verdict()) if cell.trace is not None else cell for cell in cells]


def _direct_url(model: t.MeshModel, host: str, path: str) -> str | None:
    """The backend the gateway would route `path` to, as an in-mesh caller addresses it (Service host, rewritten path)."""
    probe = t.trace_request(model, f"https://{host}{path}", t.browser(model.profiles()[next(iter(model.profiles()))]))
    # The last route taken: a redirect's route names no destination.
    route = next((h for h in reversed(probe.hops) if h.step == "route" and h.outcome == "pass" and " -> " in h.why), None)
    service = next((h for h in probe.hops if h.step == "Service"), None)
    if route is None or service is None:
        return None
    target = route.why.split(" -> ", 1)[1].split(",", 1)[0]
    rewritten = route.why.split("path rewritten to ", 1)[1] if "path rewritten to " in route.why else path
    return f"http://{target}{rewritten}"


def problems(cells: Sequence[Cell]) -> list[str]:
    return [p for p in (c.problem() for c in cells) if p]


def render_table(cells: Sequence[Cell]) -> str:
    """Paths x callers: `ok` reached, `-` refused (with the hop that refused: `-ALLOW`), `!` against expectation."""
    if not cells:
        return "Mesh trace: no profile in the plan, nothing to trace\n"
    by_row: dict[tuple[str, str], dict[str, Cell]] = {}
    for cell in cells:
        by_row.setdefault((cell.row.label, cell.row.name), {})[cell.caller_kind] = cell
    widths = {kind: max([len(kind)] + [len(_cell_text(c)) for r in by_row.values() for k, c in r.items() if k == kind])
              for kind in CALLER_KINDS}
    path_width = max(len(path) for path, _ in by_row)
    subject = next(c.row.profile for c in cells if c.row.kind != "notebook")
    lines = [f"Mesh trace (callers relative to profile {subject}; notebook rows to their own profile):",
             ("    " + f"{'path':<{path_width}}  " + "  ".join(f"{k:<{widths[k]}}" for k in CALLER_KINDS)).rstrip()]
    for (path, _), row in by_row.items():
        parts = []
        for kind in CALLER_KINDS:
            cell = row.get(kind)
            parts.append(f"{_cell_text(cell):<{widths[kind]}}")
        lines.append("    " + f"{path:<{path_width}}  " + "  ".join(parts).rstrip())
    bad = problems(cells)
    lines.append(f"    {len([c for c in cells if c.trace])} traces; " + (f"{len(bad)} against expectation" if bad else "every one as expected"))
    return "\n".join(lines) + "\n"


def _cell_text(cell: Cell | None) -> str:
    if cell is None or cell.trace is None:
        return "-"
    mark = "" if cell.ok else "!"
    if cell.trace.reached:
        return mark + "reached"
    hop = cell.trace.refused_at
    return mark + "refused@" + (hop.step if hop else "?")
