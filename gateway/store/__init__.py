"""Persistence for the gateway: one async store over SQLite or PostgreSQL."""

from .store import SerialCollision, Store, StoreError, Tx

__all__ = ["SerialCollision", "Store", "StoreError", "Tx"]
