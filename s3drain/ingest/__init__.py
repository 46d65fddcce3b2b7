"""Local files -> the Raw zone's key layout in S3."""
