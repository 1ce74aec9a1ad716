"""Several replicas on PostgreSQL behind haproxy, and what survives kill -9 and lost connections."""
