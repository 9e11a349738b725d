"""One error type for bad input, so the CLI and pipelines can report it without a traceback."""


class DnaError(ValueError):
    """Bad input: the message names the bad value and what was expected."""
