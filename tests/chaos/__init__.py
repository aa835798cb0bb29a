"""Chaos suite: real worker and API processes, real Postgres and S3, killed and restarted."""
