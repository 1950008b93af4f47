"""The one exception type that reaches users as a short message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: a bad config value, missing data, an unusable run dir.

    Entry points print ``str(error)`` on one line and exit with status 2.
    """


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was saved. Entry points exit with status 143 (128 + SIGTERM)."""
