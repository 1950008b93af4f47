"""vaemix's exceptions.

Library functions raise :class:`VaemixError` for problems a user can fix (a bad value, unreadable data,
an unusable run dir). It is a ``ValueError``, so code that calls vaemix can catch it like any other bad
argument; only the command-line entry points turn it into one line and exit status 2. A plain
``ValueError`` from a bug is not caught there and keeps its traceback.
"""


class VaemixError(ValueError):
    """A problem the user can fix; its message names the value, the key or file, and what is allowed."""


class Preempted(Exception):
    """SIGTERM arrived and a checkpoint was saved; entry points exit with status 143 (128 + SIGTERM)."""
