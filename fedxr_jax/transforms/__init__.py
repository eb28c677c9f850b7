"""Client update transforms (interface: core.transforms), one file each."""
