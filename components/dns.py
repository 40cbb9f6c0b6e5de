"""Dns: Route 53 zone lookup (or creation) and alias records to the NLB."""

from __future__ import annotations

from typing import Optional

import pulumi


class Dns(pulumi.ComponentResource):
    """Route 53 zone lookup (or creation) and alias records to the NLB.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:dns:Dns", name, None, opts)
        self.register_outputs({})
