"""Backend kinds (keys on a token, upstream CAs) driven by the real clients."""
