"""Presets for the paper's four XR use cases: one file per scenario."""
