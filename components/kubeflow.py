"""Kubeflow: upstream Kubeflow applied through ordered yaml.v2.ConfigGroups."""

from __future__ import annotations

from typing import Optional

import pulumi


class Kubeflow(pulumi.ComponentResource):
    """Upstream Kubeflow, transformed, applied through ordered yaml.v2.ConfigGroups.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, version: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:kubeflow:Kubeflow", name, None, opts)
        self.version = pulumi.Output.from_input(version)
        self.register_outputs({"version": self.version})
