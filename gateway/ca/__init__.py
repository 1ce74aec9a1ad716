"""Certificate authorities: the backend interface, the local CA and the certificate builder."""
