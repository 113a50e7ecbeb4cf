"""The one error type users see: a single line naming the bad field and what is allowed."""


class ConfigError(ValueError):
    """Bad user input, detected before any heavy work. `str(err)` is the whole message."""

    def __init__(self, field: str, problem: str, allowed: object = None):
        self.field = field
        message = f"{field}: {problem}"
        if allowed is not None:
            message += f" (allowed: {allowed})"
        super().__init__(message)


class UnsupportedError(RuntimeError):
    """A method that cannot run on the chosen hardware; becomes an 'unsupported' record."""


def check(condition: bool, field: str, problem: str, allowed: object = None) -> None:
    if not condition:
        raise ConfigError(field, problem, allowed)
