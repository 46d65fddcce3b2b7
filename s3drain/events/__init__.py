"""S3 event notifications arriving through SQS: reading messages, holding them while their
objects are drained, deleting them once settled, and setting the queue and bucket up."""
