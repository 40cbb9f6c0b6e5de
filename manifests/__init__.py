"""The functional core: upstream Kubeflow manifests in, the exact objects to apply out.

Pure Python over plain dicts, no Pulumi import: sources -> transformations -> groups -> validation,
plus the documents built from settings (identity-header filters, IAM policies).
`manifests.pipeline.transform` composes the transformations; each one is also usable on its own.
"""
