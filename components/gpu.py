"""GpuNodePools: EKS managed GPU node groups with labels, taints and autoscaler tags."""

from __future__ import annotations

from typing import Optional

import pulumi


class GpuNodePools(pulumi.ComponentResource):
    """EKS managed GPU node groups with labels, taints and autoscaler tags.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:gpu:GpuNodePools", name, None, opts)
        self.register_outputs({})
