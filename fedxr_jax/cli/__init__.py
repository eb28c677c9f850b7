"""Command-line entry points (absl)."""
