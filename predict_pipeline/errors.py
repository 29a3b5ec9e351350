"""What commands share: the one error type for a user's mistake (printed as one line, exit 2)
and the parser of id arguments."""

import argparse
import uuid


class CommandError(RuntimeError):
    pass


class ConfigError(CommandError):
    """An environment variable that is set to something the platform cannot use."""


def uuid_argument(text: str) -> uuid.UUID:
    """argparse type for an id: a clear usage error instead of a traceback."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text}") from None
