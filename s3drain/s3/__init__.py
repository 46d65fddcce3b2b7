"""Reaching S3: the client, retries, listing pages, and S3's answers as messages."""
