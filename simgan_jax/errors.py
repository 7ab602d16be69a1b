"""Errors that the launch scripts print as one line, without a traceback."""


class ConfigError(ValueError):
  """A config field or flag has a bad value; the message names the field."""


class DataError(ValueError):
  """A data file or source is missing or malformed; the message names the file."""


class TrainingDivergedError(FloatingPointError):
  """A loss became NaN or Inf; the message names the step, the loss and the last checkpoint."""
