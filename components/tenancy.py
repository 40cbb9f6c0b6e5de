"""Tenancy: users and groups to Profiles, contributors, namespace policy, per-profile IRSA."""

from __future__ import annotations

from typing import Optional

import pulumi


class Tenancy(pulumi.ComponentResource):
    """Users and groups to Profiles, contributors, namespace policy, per-profile IRSA.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:tenancy:Tenancy", name, None, opts)
        self.register_outputs({})
