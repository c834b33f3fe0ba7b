"""Data access: DynamoDB tables, Secrets Manager credentials, S3 storage."""
