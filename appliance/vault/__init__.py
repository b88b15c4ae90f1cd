"""The encrypted dataset vault: datasets exist on disk only encrypted (docs/vault-format.md).

Other components use `appliance.vault.store`: write_dataset, read_dataset, read_metadata,
list_datasets, dataset_info, remove_dataset, export_dataset.
"""

from appliance.vault.store import (
    DatasetInfo,
    dataset_info,
    export_dataset,
    list_datasets,
    read_dataset,
    read_export,
    read_metadata,
    remove_dataset,
    verify_dataset,
    write_dataset,
)

__all__ = [
    "DatasetInfo",
    "dataset_info",
    "export_dataset",
    "list_datasets",
    "read_dataset",
    "read_export",
    "read_metadata",
    "remove_dataset",
    "verify_dataset",
    "write_dataset",
]
