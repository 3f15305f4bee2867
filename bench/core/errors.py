"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class BenchError(Exception):
    """Something the user can fix: bad input, a missing file, an unknown name.

    The message must say what is wrong and what to do about it, on one line.
    """


class DataError(BenchError):
    """A data file or dataset manifest is missing, malformed or fails its checksum."""


class SplitError(BenchError):
    """A split cannot be made on a dataset, or a frozen split file is invalid."""


class ModelError(BenchError):
    """A model crashed, or returned predictions that break the adapter contract."""


class BenchWarning(UserWarning):
    """Something the user should know that stops nothing; the CLI prints it as one ``warning:`` line."""
