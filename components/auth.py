"""Auth: the trusted kubeflow-userid header, RequestAuthentication and gateway authorization."""

from __future__ import annotations

from typing import Optional

import pulumi


class Auth(pulumi.ComponentResource):
    """The trusted kubeflow-userid header, RequestAuthentication and gateway authorization.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:auth:Auth", name, None, opts)
        self.register_outputs({})
