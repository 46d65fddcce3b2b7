"""The local side: where a key becomes a path, the file-system seam, the lock, the audit log."""
