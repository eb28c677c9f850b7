"""Errors a user can cause: the CLI prints them as one line, never a traceback."""


class FedXRError(Exception):
  """Base class of errors caused by bad input (config, files, shapes)."""


class ConfigError(FedXRError, ValueError):
  """A config value is missing, misspelt, out of range or inconsistent."""


class CheckpointError(FedXRError):
  """A checkpoint could not be read (corrupt, truncated, or from another run)."""


class DataError(FedXRError):
  """A data archive or file is missing, corrupt, unsafe, or not the pinned one."""
