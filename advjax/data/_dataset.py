"""The :class:`Dataset` container returned by every loader."""

from __future__ import annotations

import dataclasses

import numpy as np

from advjax.data._errors import DataError


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """An image classification split held on the host.

    Attributes:
        images: ``uint8`` array of shape ``(N, H, W, C)`` (NHWC), values 0..255.
        labels: ``int32`` array of shape ``(N,)`` with values in ``[0, num_classes)``.
        name: Human-readable identifier, e.g. ``"mnist/test"``.
        num_classes: Number of classes of the label space.
        classes: The class names in label order, when the source names them
            (e.g. an image folder's class folders), else ``None``.

    Raises:
        DataError: On construction, if ``images`` is not a 4-d ``uint8`` array,
            ``labels`` not a 1-d ``int32`` array, their lengths differ,
            ``num_classes`` is not an int ``>= 1`` or a label lies outside
            ``[0, num_classes)``.

    Example:
        >>> import numpy as np
        >>> from advjax.data import Dataset
        >>> ds = Dataset(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 1], np.int32), "toy", 2)
        >>> len(ds), ds.image_shape
        (2, (4, 4, 1))
        >>> ds
        Dataset(name='toy', images=uint8[2, 4, 4, 1], labels=int32[2], num_classes=2)
        >>> Dataset(np.zeros((2, 4, 4, 1), np.uint8), np.array([0, 2], np.int32), "toy", 2)
        Traceback (most recent call last):
            ...
        advjax.data._errors.DataError: Dataset 'toy': labels must lie in [0, 2), found range ...
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    num_classes: int
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        """Validate dtypes, shapes and the label range."""
        _validate(self.images, self.labels, self.name, self.num_classes)
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise DataError(
                f"Dataset {self.name!r}: {len(self.classes)} class names for "
                f"{self.num_classes} classes."
            )

    def __repr__(self) -> str:
        """Summarise the arrays by dtype and shape instead of printing them."""
        images = f"{self.images.dtype.name}{list(self.images.shape)}"
        labels = f"{self.labels.dtype.name}{list(self.labels.shape)}"
        return (
            f"Dataset(name={self.name!r}, images={images}, labels={labels}, "
            f"num_classes={self.num_classes})"
        )

    def __len__(self) -> int:
        """Return the number of examples."""
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices, name: str | None = None) -> Dataset:
        """Return the examples at ``indices`` (any numpy index: slice, int array, bool mask).

        Args:
            indices: Index selecting examples along the first axis.
            name: Name of the result; defaults to ``"<name>[subset]"``.

        Returns:
            A new :class:`Dataset` (the arrays are copies unless ``indices`` is a slice).

        Raises:
            DataError: ``indices`` is a single integer (it would drop the batch axis).

        Example:
            >>> import numpy as np
            >>> from advjax.data import Dataset
            >>> ds = Dataset(np.zeros((5, 2, 2, 1), np.uint8), np.arange(5, dtype=np.int32), "t", 5)
            >>> ds.subset(slice(1, 3)).labels.tolist()
            [1, 2]
        """
        if isinstance(indices, (int, np.integer)):
            raise DataError(
                "Dataset.subset expects a slice, an integer array or a boolean mask, "
                f"not the single integer {indices}; use subset([{indices}])."
            )
        return Dataset(
            images=self.images[indices],
            labels=self.labels[indices],
            name=name if name is not None else f"{self.name}[subset]",
            num_classes=self.num_classes,
            classes=self.classes,
        )


def _validate(images: np.ndarray, labels: np.ndarray, name: str, num_classes: int) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(
            f"Dataset {name!r}: images must be a uint8 numpy array of shape (N, H, W, C); got "
            f"{type(images).__name__} dtype={getattr(images, 'dtype', None)} "
            f"shape={getattr(images, 'shape', None)}. Convert with np.asarray(x, np.uint8) "
            "and add a channel axis if needed."
        )
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int32 or labels.ndim != 1:
        raise DataError(
            f"Dataset {name!r}: labels must be an int32 numpy array of shape (N,); got "
            f"{type(labels).__name__} dtype={getattr(labels, 'dtype', None)} "
            f"shape={getattr(labels, 'shape', None)}. Convert with labels.astype(np.int32)."
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"Dataset {name!r}: {images.shape[0]} images but {labels.shape[0]} labels; "
            "they must have the same length."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise DataError(f"Dataset {name!r}: num_classes must be an int, got {num_classes!r}.")
    if num_classes < 1:
        raise DataError(f"Dataset {name!r}: num_classes must be >= 1, got {num_classes}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"Dataset {name!r}: labels must lie in [0, {num_classes}), found range "
            f"[{labels.min()}, {labels.max()}]. Check num_classes or the label file."
        )
