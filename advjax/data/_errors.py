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
    """A local file exists but its checksum is not the expected one (it is never reused).

    Example:
        >>> import pathlib, tempfile
        >>> from advjax.data import ChecksumError, fetch_files
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = pathlib.Path(tmp.name) / "mnist"
        >>> folder.mkdir()
        >>> _ = (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
        >>> try:
        ...     fetch_files("mnist", "test", data_dir=tmp.name, download=False)
        ... except ChecksumError as err:
        ...     print(type(err).__name__, "md5 is" in str(err))
        ChecksumError True
        >>> (folder / "t10k-labels-idx1-ubyte.gz").read_bytes()  # left untouched
        b'not mnist'
        >>> tmp.cleanup()
    """


class MissingDataError(DataError):
    """A required file is absent and could not (or was not allowed to) be downloaded.

    Example:
        >>> import tempfile
        >>> from advjax.data import MissingDataError, load_mnist
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     try:
        ...         load_mnist("test", data_dir=tmp, download=False)
        ...     except MissingDataError as err:
        ...         print(type(err).__name__, isinstance(err, ValueError))
        MissingDataError True
    """
