"""Reasoning over what a plan applies (pure Python, no Pulumi): how Istio will treat the emitted objects."""
