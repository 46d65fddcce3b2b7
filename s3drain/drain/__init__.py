"""S3 prefix -> local folder: select, decide, download, delete, report."""
