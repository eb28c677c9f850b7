"""Run presets on the real datasets (data/sources.py): one file per dataset."""
