"""The HTTP edge of the core: app factory, middlewares, status and ops routes."""
