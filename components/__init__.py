"""One ComponentResource per file; each registers resources and holds no manifest logic."""
