"""IngressGateway: the mesh's istio-ingressgateway Service behind an NLB, and the central Gateway."""

from __future__ import annotations

from typing import Optional

import pulumi


class IngressGateway(pulumi.ComponentResource):
    """The mesh's istio-ingressgateway Service behind an NLB, and the central Gateway.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:ingress:IngressGateway", name, None, opts)
        self.register_outputs({})
