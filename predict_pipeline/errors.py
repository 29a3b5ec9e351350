"""The one error type commands raise for a user's mistake: printed as one line, exit 2."""


class CommandError(RuntimeError):
    pass
