"""The encrypted dataset vault: datasets exist on disk only encrypted (docs/vault-format.md).

Other components use `appliance.vault.store`: write_dataset, read_dataset, load_dataset
(both splits, digest and metadata from one decryption: what training needs), read_metadata,
verify_dataset, list_datasets, dataset_info, remove_dataset, export_dataset, read_export.
"""

from appliance.vault.store import (
    DatasetInfo,
    LoadedDataset,
    dataset_info,
    export_dataset,
    list_datasets,
    load_dataset,
    read_dataset,
    read_export,
    read_metadata,
    remove_dataset,
    verify_dataset,
    write_dataset,
)

__all__ = [
    "DatasetInfo",
    "LoadedDataset",
    "dataset_info",
    "export_dataset",
    "list_datasets",
    "load_dataset",
    "read_dataset",
    "read_export",
    "read_metadata",
    "remove_dataset",
    "verify_dataset",
    "write_dataset",
]
