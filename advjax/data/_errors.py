"""Exceptions raised by :mod:`advjax.data`."""


class DataError(ValueError):
    """A data set file or argument is unusable; the message says what is wrong and what to do.

    Example:
        >>> from advjax.data import DataError, load_mnist
        >>> try:
        ...     load_mnist("validation")
        ... except DataError as err:
        ...     print(type(err).__name__)
        DataError
    """


class ChecksumError(DataError):
    """A local file exists but its checksum is not the expected one (it is never reused)."""


class MissingDataError(DataError):
    """A required file is absent and could not (or was not allowed to) be downloaded."""
