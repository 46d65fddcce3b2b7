"""Where settings come from (flags, environment, .env) and the S3 connection settings."""
