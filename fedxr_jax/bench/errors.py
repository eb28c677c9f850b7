"""Errors of the benchmark side, each one line for the CLIs."""
from fedxr_jax.errors import ConfigError, FedXRError


class SubmissionError(FedXRError, ValueError):
  """A submission or verification file is unreadable, malformed or tampered with."""


class TrackError(ConfigError):
  """A track is ill-defined, unknown, or a run overrides it outside its limits."""
