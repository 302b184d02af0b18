"""Data directory resolution, checksum verification and downloads.

Files live in ``<data root>/<dataset subfolder>/<file name>``. The data root is, in order of
precedence: the ``data_dir`` argument, the ``ADVJAX_DATA`` environment variable, or the
per-user cache ``$XDG_CACHE_HOME/advjax`` (``~/.cache/advjax`` when that is unset).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from advjax.data._errors import ChecksumError, DataError, MissingDataError
from advjax.data._registry import REGISTRY, DatasetSource, RemoteFile

logger = logging.getLogger(__name__)

ENV_VAR = "ADVJAX_DATA"
"""The environment variable naming the data root when no ``data_dir`` is given."""
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20
_USER_AGENT = "advjax-data/0.1 (+https://github.com/advjax)"


def default_data_root() -> Path:
    """Return the data root used when no ``data_dir`` is given.

    ``$ADVJAX_DATA`` if set and non-empty, else ``$XDG_CACHE_HOME/advjax`` if that is an
    absolute path, else ``~/.cache/advjax``.

    Returns:
        The data root (it may not exist yet).

    Example:
        >>> from advjax.data import default_data_root, dataset_dir
        >>> dataset_dir("mnist") == default_data_root() / "mnist"
        True
    """
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "advjax"


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Return ``data_dir`` if given, else :func:`default_data_root`.

    Args:
        data_dir: Explicit data root, or ``None``.

    Returns:
        The data root as a :class:`~pathlib.Path` (``~`` expanded).

    Example:
        >>> from advjax.data import resolve_data_root
        >>> str(resolve_data_root("/data"))
        '/data'
    """
    if data_dir is None:
        return default_data_root()
    return Path(data_dir).expanduser()


def get_source(dataset: str) -> DatasetSource:
    """Return the registry entry of ``dataset``.

    Args:
        dataset: One of ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``.

    Returns:
        Its :class:`DatasetSource`.

    Raises:
        DataError: Unknown data set name.

    Example:
        >>> from advjax.data import get_source
        >>> get_source("fashion_mnist").subdir
        'fashion_mnist'
    """
    try:
        return REGISTRY[dataset]
    except (KeyError, TypeError):
        raise DataError(
            f"Unknown data set {dataset!r}; choose one of {sorted(REGISTRY)}."
        ) from None


def dataset_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding the files of ``dataset`` (``<data root>/<subfolder>``).

    Args:
        dataset: Registry name, e.g. ``"mnist"``.
        data_dir: Explicit data root, or ``None`` for :func:`default_data_root`.

    Returns:
        The data set folder (it may not exist yet).

    Example:
        >>> from advjax.data import dataset_dir
        >>> str(dataset_dir("cifar100", "/data"))
        '/data/cifar100'
    """
    return resolve_data_root(data_dir) / get_source(dataset).subdir


def file_md5(path: str | os.PathLike) -> str:
    """Return the hex md5 digest of a file, read in chunks.

    Args:
        path: File to hash.

    Returns:
        32 lowercase hex characters.

    Example:
        >>> import tempfile, pathlib
        >>> from advjax.data import file_md5
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = pathlib.Path(tmp.name) / "f"
        >>> _ = p.write_bytes(b"abc")
        >>> file_md5(p)
        '900150983cd24fb0d6963f7d28e17f72'
        >>> tmp.cleanup()
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalize_mirrors(mirrors: str | Sequence[str] | None, source: DatasetSource) -> tuple:
    if mirrors is None:
        return source.mirrors
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    mirrors = tuple(mirrors)
    if not mirrors or not all(isinstance(m, str) and m for m in mirrors):
        raise DataError(
            f"mirrors must be a non-empty sequence of base URLs (strings), got {mirrors!r}."
        )
    return tuple(m if m.endswith("/") else m + "/" for m in mirrors)


def _verify_existing(path: Path, remote: RemoteFile) -> None:
    if not path.is_file():
        raise DataError(f"{path} exists but is not a regular file; remove it or move it away.")
    actual = file_md5(path)
    if actual != remote.md5:
        raise ChecksumError(
            f"{path} exists but its md5 is {actual}, not the published {remote.md5} of "
            f"{remote.name}: it is corrupt, truncated or a different file. It is never reused "
            f"or overwritten automatically; delete it (rm '{path}') and run again to "
            "re-download it, or replace it with a correct copy."
        )


class _AttemptFailed(Exception):
    """One download attempt failed (collected, then reported in a MissingDataError)."""


def _download_to(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Download ``url`` into ``dest`` atomically; ``dest`` only appears if the md5 matches."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    declared = response.headers.get("Content-Length")
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        received += len(chunk)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                raise _AttemptFailed(f"{type(err).__name__}: {err}") from err
        if declared is not None and declared.isdigit() and received != int(declared):
            raise _AttemptFailed(
                f"connection ended after {received} of {declared} bytes (truncated download)"
            )
        actual = digest.hexdigest()
        if actual != md5:
            raise _AttemptFailed(
                f"downloaded {received} bytes with md5 {actual}, expected {md5} "
                "(corrupt, truncated or wrong file; discarded)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _missing_message(
    source: DatasetSource,
    directory: Path,
    root: Path,
    attempts: dict[str, list[tuple[str, str | None]]],
    download: bool,
) -> str:
    lines = []
    if download:
        lines.append(f"Could not download {len(attempts)} file(s) of {source.name}:")
    else:
        lines.append(
            f"{len(attempts)} file(s) of {source.name} are missing and downloads are disabled "
            "(download=False):"
        )
    for name, tries in attempts.items():
        lines.append(f"  - {name}  (md5 {source.file(name).md5})")
        for url, reason in tries:
            lines.append(f"      {url}" + (f"  -> {reason}" if reason else ""))
    lines.append(
        "Get the files from one of the URLs above (or any copy with the same md5), "
        "and put them in this directory:"
    )
    lines.append(f"  {directory}")
    misplaced = [n for n in attempts if (root / n).is_file()]
    if misplaced:
        fix = (
            f"pass data_dir='{root.parent}' instead"
            if root.name == source.subdir
            else f"move them into {directory}"
        )
        lines.append(
            f"Note: {', '.join(misplaced)} found directly in {root}; data_dir is the data root, "
            f"and {source.name} files belong in its '{source.subdir}' subfolder: {fix}."
        )
    if download:
        lines.append("If you are offline, copy them there by hand, then load with download=False.")
    else:
        lines.append("Or pass download=True to fetch them.")
    return "\n".join(lines)


def fetch_files(
    dataset: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    mirrors: str | Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Path]:
    """Make sure the files of ``dataset`` (one split or all) are present and verified.

    Existing files are checked against their published md5; a mismatch raises
    :class:`ChecksumError` and the file is left untouched. Missing files are downloaded
    (if ``download``) from each mirror in turn, into a temporary file in the destination
    folder that is renamed into place only after its md5 matches.

    Args:
        dataset: Registry name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``).
        split: ``"train"``, ``"test"``, or ``None`` for every file of the data set.
        data_dir: Data root (see :func:`resolve_data_root`).
        download: If false, missing files raise :class:`MissingDataError` instead.
        mirrors: Base URLs replacing the registry's mirrors (tried in order).
        timeout: Socket timeout in seconds for each request.

    Returns:
        Mapping from file name to its verified local path.

    Raises:
        DataError: Unknown data set or split, bad arguments.
        ChecksumError: An existing file has the wrong md5.
        MissingDataError: A file is missing and could not be downloaded; the message lists
            each file, its md5, the URLs tried and the directory to put it in.

    Example:
        >>> from advjax.data import MissingDataError, fetch_files
        >>> try:
        ...     fetch_files("mnist", "test", data_dir="/nonexistent", download=False)
        ... except MissingDataError as err:
        ...     print(str(err).splitlines()[0])
        2 file(s) of mnist are missing and downloads are disabled (download=False):
    """
    source = get_source(dataset)
    if split is None:
        remotes = source.files
    else:
        if split not in source.splits:
            raise DataError(
                f"Unknown split {split!r} for {dataset}; choose one of {sorted(source.splits)}."
            )
        remotes = source.split_files(split)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise DataError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    bases = _normalize_mirrors(mirrors, source)
    root = resolve_data_root(data_dir)
    directory = root / source.subdir
    paths = {remote.name: directory / remote.name for remote in remotes}

    missing = []
    for remote in remotes:
        path = paths[remote.name]
        if path.exists():
            _verify_existing(path, remote)
        else:
            missing.append(remote)
    if not missing:
        return paths

    attempts: dict[str, list[tuple[str, str | None]]] = {}
    if not download:
        for remote in missing:
            attempts[remote.name] = [(base + remote.name, None) for base in bases]
        raise MissingDataError(_missing_message(source, directory, root, attempts, False))

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"Cannot create the data directory {directory} ({err}); pass a writable data_dir "
            f"or set {ENV_VAR}."
        ) from err
    for remote in missing:
        tries: list[tuple[str, str | None]] = []
        for base in bases:
            url = base + remote.name
            logger.info("downloading %s -> %s", url, paths[remote.name])
            try:
                _download_to(url, paths[remote.name], remote.md5, float(timeout))
            except _AttemptFailed as err:
                tries.append((url, str(err)))
                continue
            break
        else:
            attempts[remote.name] = tries
    if attempts:
        raise MissingDataError(_missing_message(source, directory, root, attempts, True))
    return paths
