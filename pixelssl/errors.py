"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class PixelSSLError(Exception):
    """A problem the user can fix (bad input, bad config, missing file); the message says what and where."""


class DataError(PixelSSLError):
    """A dataset cannot be used: empty, missing, wrong layout, label/image mismatch."""


class TrainingDiverged(PixelSSLError):
    """The loss became non-finite; the last good checkpoint is kept."""


class Preempted(PixelSSLError):
    """A stop signal (SIGTERM / SIGINT / SIGUSR1) arrived; a checkpoint was written and the run can be resumed."""

    exit_code = 75  # EX_TEMPFAIL: "try again later", distinct from errors (1) and a hard interrupt (130)


class RunLocked(PixelSSLError):
    """Another live process is writing the same run directory."""


class WeightsFileError(PixelSSLError, ValueError):
    """A weights file cannot be used: missing, empty, truncated, of another format, or holding pickled code.

    Also a ``ValueError``, so code that rewraps unreadable weights as ``ValueError`` keeps working."""
