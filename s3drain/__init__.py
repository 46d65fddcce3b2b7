"""s3drain: drain an S3 prefix to a local folder without ever losing an object."""

__version__ = "0.1.0"
