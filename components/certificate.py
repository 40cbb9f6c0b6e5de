"""Certificate: ACM certificate for the hosts with Route 53 DNS validation."""

from __future__ import annotations

from typing import Optional

import pulumi


class Certificate(pulumi.ComponentResource):
    """ACM certificate for the hosts with Route 53 DNS validation.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:certificate:Certificate", name, None, opts)
        self.register_outputs({})
