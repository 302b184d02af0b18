"""Data sets for advjax: verified loaders, an embedded MNIST subset and resumable batching.

Every loader returns a :class:`Dataset` of ``uint8`` NHWC images and ``int32`` labels held
on the host; :func:`batches` moves mini-batches to the device as ``float32`` in ``[0, 1]``.
Files are verified against published checksums and never silently reused or replaced.
"""

from advjax.data._augment import random_crop_flip
from advjax.data._batching import (
    EpochBatch,
    batches,
    epoch_permutation,
    epochs,
    num_batches,
    to_device,
)
from advjax.data._cifar import (
    parse_cifar_records,
    read_cifar10_archive,
    read_cifar100_archive,
    read_tar_members,
)
from advjax.data._dataset import Dataset
from advjax.data._download import (
    ENV_VAR,
    dataset_dir,
    default_data_root,
    fetch_files,
    file_md5,
    get_source,
    resolve_data_root,
)
from advjax.data._embedded import embedded_manifest, load_embedded_mnist
from advjax.data._errors import ChecksumError, DataError, MissingDataError
from advjax.data._idx import (
    decompress_gz,
    idx_gz_bytes,
    idx_images_from_bytes,
    idx_labels_from_bytes,
    images_labels_to_dataset,
    load_idx_pair,
    parse_idx,
    read_idx_gz,
    read_idx_images,
    read_idx_labels,
    write_idx_gz,
)
from advjax.data._image_folder import load_image_folder
from advjax.data._loaders import load_cifar10, load_cifar100, load_fashion_mnist, load_mnist
from advjax.data._map import bucket_size, map_batches
from advjax.data._named import NAMED_DATASETS, NamedDataset, load_named
from advjax.data._registry import REGISTRY, DatasetSource, RemoteFile

__all__ = [
    "random_crop_flip",
    "load_image_folder",
    "NAMED_DATASETS",
    "NamedDataset",
    "load_named",
    "bucket_size",
    "map_batches",
    "ENV_VAR",
    "REGISTRY",
    "ChecksumError",
    "DataError",
    "Dataset",
    "DatasetSource",
    "EpochBatch",
    "MissingDataError",
    "RemoteFile",
    "batches",
    "dataset_dir",
    "decompress_gz",
    "default_data_root",
    "embedded_manifest",
    "epoch_permutation",
    "epochs",
    "fetch_files",
    "file_md5",
    "get_source",
    "idx_gz_bytes",
    "idx_images_from_bytes",
    "idx_labels_from_bytes",
    "images_labels_to_dataset",
    "load_cifar10",
    "load_cifar100",
    "load_embedded_mnist",
    "load_fashion_mnist",
    "load_idx_pair",
    "load_mnist",
    "num_batches",
    "parse_cifar_records",
    "parse_idx",
    "read_cifar10_archive",
    "read_cifar100_archive",
    "read_idx_gz",
    "read_idx_images",
    "read_idx_labels",
    "read_tar_members",
    "resolve_data_root",
    "to_device",
    "write_idx_gz",
]
