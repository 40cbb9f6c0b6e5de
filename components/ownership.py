"""What the stack relies on but does not own, as the `ownership` stack export (analysis.ownership reads it).

The plan itself says what is created (every object of a ConfigGroup or a plain resource) and what is patched
(every `*Patch` resource); only the settings say whose the patched objects are and which objects must exist
without appearing in any resource (the mesh config the auth proxy's extension provider goes into). Pure: no
resource is registered here.
"""

from __future__ import annotations

from typing import Any

from config import Settings

#: Where istiod reads its mesh config: ConfigMap `istio` (`istio-<revision>` for a revisioned control plane)
#: in istiod's namespace, istio-system by default (the name Istio's istio-discovery chart gives it in
#: templates/configmap.yaml). A mesh installed elsewhere is named in the estate, not here.
MESH_NAMESPACE = "istio-system"


def _entry(api_version: str, kind: str, namespace: str, name: str, **why: str) -> dict[str, str]:
    return {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name, **why}


def ownership_declarations(settings: Settings) -> dict[str, Any]:
    """`{"expected": [...], "owners": [...], "cowriters": [...]}`: objects that must exist (with why), whose the
    objects the stack patches are, and who writes the stack's own objects beside it at run time."""
    expected: list[dict[str, str]] = []
    owners: list[dict[str, str]] = []
    argo = settings.kubeflow.argo
    if argo.external:
        expected.append(_entry("v1", "Namespace", "", argo.namespace,
                               reason="the enterprise's Argo Workflows runs there (kubeflow.argo.namespace)"))
        owners.append(_entry(
            "v1", "ConfigMap", argo.namespace, argo.configmap_name,
            owner="the enterprise's Argo Workflows: its installation ships this ConfigMap; the stack patches only "
                  "its own keys (artifactRepository, executor, workflowDefaults) and must find it in per-key form, "
                  "not a single `config` key"))
        # KFP creates Workflows at run time, and its workflow pods write WorkflowTaskResults: the enterprise's
        # Argo serves both kinds.
        for plural in ("workflows", "workflowtaskresults"):
            expected.append(_entry("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", f"{plural}.argoproj.io",
                                   reason="the enterprise's Argo Workflows ships it; Kubeflow Pipelines creates "
                                          "these objects at run time"))
        # The accounts identity.argoServiceAccounts opts in: patched with their IRSA role annotation only.
        for account in settings.identity.argo_service_accounts:
            owners.append(_entry(
                "v1", "ServiceAccount", argo.namespace, account,
                owner="the enterprise's Argo Workflows: the stack patches only its IRSA role annotation"))
    ingress = settings.ingress
    if ingress.mode == "patch":
        owners.append(_entry(
            "v1", "Service", ingress.namespace, ingress.service_name,
            owner="the mesh owner's gateway installation: the stack patches its type, source ranges, the HTTPS port "
                  "and the load balancer annotations, with force (the installer sets the same fields)"))
    expected.append(_entry("v1", "Namespace", "", ingress.namespace,
                           reason="the mesh owner's: the ingress gateway's pods run there"))
    if ingress.namespace != MESH_NAMESPACE:
        expected.append(_entry("v1", "Namespace", "", MESH_NAMESPACE, reason="the mesh owner's: istiod runs there"))
    revision = settings.kubeflow.mesh.revision
    mesh_config = f"istio-{revision}" if revision else "istio"
    expected.append(_entry(
        "v1", "ConfigMap", MESH_NAMESPACE, mesh_config,
        reason=f"the mesh owner's mesh config: its extensionProviders must hold {settings.auth.extension_provider!r} "
               "(the stack's authExtensionProvider output); checked, never written"))
    cowriters: list[dict[str, str]] = []
    # Only the profiles this stack creates: a platform stack that places them in tenancy stacks writes none of their
    # namespaces, and its outputs, which every tenancy stack's StackReference reads whole, stay the size of the platform.
    for profile in settings.profiles_created():
        # Kept namespaces are patched (components.tenancy.Tenancy._namespace), others created; either way the
        # profile controller writes them too.
        cowriters.append(_entry(
            "v1", "Namespace", "", profile.name,
            owner="profile namespace: the profile controller adopts it (owner annotation) and adds its own labels; "
                  "the users' notebooks, volumes and runs live there" + (
                      ", so a removed profile leaves it (kubeflow.keepCrdsAndNamespaces)"
                      if settings.kubeflow.keep_crds_and_namespaces else "")))
    return {"expected": expected, "owners": owners, "cowriters": cowriters}
