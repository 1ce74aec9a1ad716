"""What-if patches for ``gateway serve``, loaded only by ``python -m bench.whatif``.

The benchmark does not change the gateway; to show what a proposed change would
buy before anyone makes it, bench.whatif starts a second gateway with this directory
on PYTHONPATH and ``BENCH_WHATIF=patch,patch`` in its environment. Each patch is
the smallest stand-in for a proposed change (see bench/README.md, profile findings).
"""

import os


def _sqlite_normal() -> None:
    """PRAGMA synchronous = NORMAL on the SQLite store (WAL stays; no fsync per commit)."""
    from sqlalchemy import event

    from gateway.store import engine as store_engine

    original = store_engine.install_sqlite_hooks

    def install(engine, busy_timeout_ms):  # type: ignore[no-untyped-def]
        original(engine, busy_timeout_ms)

        @event.listens_for(engine.sync_engine, "connect")
        def _synchronous(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

    store_engine.install_sqlite_hooks = install


def _sqlite_one_connection() -> None:
    """One pooled SQLite connection: statements queue in the pool instead of in
    SQLite's busy handler (which sleeps 1..100 ms between retries)."""
    from gateway.store import engine as store_engine

    original = store_engine.create_async_engine

    def create(url, **kwargs):  # type: ignore[no-untyped-def]
        if "sqlite" in str(url):
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
        return original(url, **kwargs)

    store_engine.create_async_engine = create


def _secret_cache() -> None:
    """Remember (secret, stored hash) pairs that verified, so a static SCEP challenge
    or an EST password costs one scrypt per process instead of one per request."""
    import hashlib

    from gateway import secrets

    original = secrets.verify_secret
    verified: set[bytes] = set()

    def verify(secret: str, stored: str) -> bool:
        key = hashlib.sha256(stored.encode() + b"\0" + secret.encode()).digest()
        if key in verified:
            return True
        ok = original(secret, stored)
        if ok:
            if len(verified) > 4096:
                verified.clear()
            verified.add(key)
        return ok

    secrets.verify_secret = verify
    for module in ("protocols.scep.challenge", "protocols.est.auth"):
        try:
            mod = __import__(module, fromlist=["verify_secret"])
        except ImportError:
            continue
        mod.verify_secret = verify  # type: ignore[attr-defined]


PATCHES = {"sqlite-normal": _sqlite_normal, "sqlite-one-connection": _sqlite_one_connection,
           "secret-cache": _secret_cache}

for _name in filter(None, os.environ.get("BENCH_WHATIF", "").split(",")):
    PATCHES[_name.strip()]()
