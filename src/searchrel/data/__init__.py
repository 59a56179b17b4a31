"""Data: the dataset format, importers, the synthetic world and splits."""

from searchrel.data.dataset import Dataset, DatasetError, DatasetInfo, Scale, load_dataset

__all__ = ["Dataset", "DatasetError", "DatasetInfo", "Scale", "load_dataset"]
