"""One exception type for problems the user can fix, so the CLI can print them without a traceback."""


class ResegError(Exception):
    """An error caused by user input (a path, a key, a value); the message says what was expected."""
