"""``gateway info --json``: the contract scripts use to find URLs, CAs and dev credentials."""

from __future__ import annotations

from typing import Any

from .bootstrap import ROOT_CA, read_dev_credentials
from .config import Config
from .store import Store


async def gather_info(config: Config, store: Store | None = None) -> dict[str, Any]:
    """``store``: an open one to read (the running server's); otherwise one is opened."""
    from .composition import adapters, protocol_names

    creds = read_dev_credentials(config)
    opened = store is None
    if store is None:
        store = await Store.open(config.store_url)
    try:
        async with store.read() as q:
            cas = await q.cas.list()
            configs = await q.configs.list()
    finally:
        if opened:
            await store.close()
    cas_dir = config.data_dir / "cas"
    # Keyed by protocol, or by the key an adapter asks for (Windows: ``xcep``, the name of
    # the policy protocol whose URLs an admin puts into Group Policy).
    keys = {a.name: getattr(a, "info_key", a.name) for a in adapters()}
    protocols: dict[str, list[dict[str, Any]]] = {keys.get(name, name): [] for name in protocol_names()}
    for adapter in adapters():
        dev = creds.get(adapter.name, {})
        # Stable order (documented in the README): the configurations init made first, then
        # by creation, so ``.protocols.scep[0]`` stays the dev one; select others by ``config``.
        records = sorted((c for c in configs if c.protocol == adapter.name),
                         key=lambda c: (c.id not in dev, c.created_at, c.id))
        rank = {rec.id: n for n, rec in enumerate(records)}
        entries = adapter.describe(config, records, dev)
        protocols[keys[adapter.name]] = sorted(entries, key=lambda e: rank.get(e.get("config", ""), len(rank)))
    return {
        "https": config.https_url,
        "http": config.http_url,
        "tls_ca": str((cas_dir / f"{ROOT_CA}.pem").resolve()),
        "data_dir": str(config.data_dir.resolve()),
        "cas": [
            {
                "id": ca.id,
                "name": ca.name,
                "kind": ca.kind,
                "state": ca.state,
                "certificate": str((cas_dir / f"{ca.id}.pem").resolve()),
                "chain": str((cas_dir / f"{ca.id}-chain.pem").resolve()),
                "crl": config.crl_url(ca.id),
                "ocsp": config.ocsp_url(ca.id),
            }
            for ca in sorted(cas, key=lambda c: (c.parent_id is not None, c.created_at, c.id))
        ],
        "admin": {"url": f"{config.https_url}/admin", "api_key": creds.get("admin_api_key")},
        "console": {"url": f"{config.https_url}/console/" if config.console.enabled else None,
                    **(creds.get("console") or {})},
        "protocols": protocols,
    }
