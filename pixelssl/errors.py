"""User-facing errors: the CLI prints these as one line (no traceback unless --debug)."""


class PixelSSLError(Exception):
    """A problem the user can fix (bad input, bad config, missing file); the message says what and where."""


class DataError(PixelSSLError):
    """A dataset cannot be used: empty, missing, wrong layout, label/image mismatch."""


class TrainingDiverged(PixelSSLError):
    """The loss became non-finite; the last good checkpoint is kept."""
