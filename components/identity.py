"""WorkloadIdentity: the cluster's IAM OIDC provider and IRSA roles with scoped trust."""

from __future__ import annotations

from typing import Optional

import pulumi


class WorkloadIdentity(pulumi.ComponentResource):
    """The cluster's IAM OIDC provider and IRSA roles with scoped trust.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:identity:WorkloadIdentity", name, None, opts)
        self.register_outputs({})
