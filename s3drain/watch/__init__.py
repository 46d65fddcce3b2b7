"""`s3drain watch`: S3's event notifications (events/) fed through a drain's pipeline (drain/)."""
