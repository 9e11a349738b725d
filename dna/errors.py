"""One error type for bad input, so the CLI and pipelines can report it without a traceback."""


class DnaError(ValueError):
    """Bad input: the message names the bad value and what was expected."""


def check_keys(d, allowed, what: str) -> None:
    """Raise :class:`DnaError` naming the keys of ``d`` outside ``allowed`` (``what``: e.g.
    ``"data config keys"``), with the keys that are allowed."""
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise DnaError(f"unknown {what} {unknown} (expected some of {sorted(allowed)})")


def field_names(cls) -> set[str]:
    """The field names of a dataclass: the keys its ``from_dict`` accepts."""
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}
