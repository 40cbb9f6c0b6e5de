"""ArtifactStore: S3 artifact buckets with secure defaults."""

from __future__ import annotations

from typing import Optional

import pulumi


class ArtifactStore(pulumi.ComponentResource):
    """S3 artifact buckets with secure defaults.

    Registered by every stack; its resources are added by the issue that builds this area.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("kubeflow-platform:artifacts:ArtifactStore", name, None, opts)
        self.register_outputs({})
