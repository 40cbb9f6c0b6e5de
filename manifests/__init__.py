"""Pure Python over plain dicts, no Pulumi: upstream manifests, their transformations, IAM documents."""
