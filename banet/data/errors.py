"""The one error type of the data package."""


class DatasetError(ValueError):
    """A dataset folder, split or pair is missing or inconsistent; the message names the files."""
