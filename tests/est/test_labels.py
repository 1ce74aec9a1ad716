"""Labels are cached per configuration generation: a change made by another process
(a second worker, a replica, the CLI) is seen on the very next request."""

from __future__ import annotations

from gateway.config import load_config
from gateway.runtime import Gateway
from gateway.secrets import hash_secret

from .helpers import EstServer, b64, make_csr


async def test_a_change_made_by_another_process_is_seen_on_the_next_request(est: EstServer) -> None:
    await est.label("edit", users={"u": "p"})
    csr, _ = make_csr("edit-1")
    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("u", "p"))).status == 200
    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("u", "p"))).status == 200  # cached

    other = await Gateway.open(load_config(est.gw.config.data_dir))  # its own store engine, as a worker has
    try:
        door = other.door("est")
        await door.update_configuration(
            "edit", settings={"approval": "manual", "retry_after": 9},
            credentials={"basic": [{"username": "v", "password": hash_secret("q")}]},
        )
    finally:
        await other.close()

    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("u", "p"))).status == 401
    held = await est.post("simpleenroll", b64(make_csr("edit-2")[0]), label="edit", auth=("v", "q"))
    assert held.status == 202 and held.headers["Retry-After"] == "9"


async def test_a_label_disabled_elsewhere_is_refused_on_the_next_request(est: EstServer) -> None:
    await est.label("gone", users={"u": "p"})
    assert (await est.get("cacerts", label="gone")).status == 200
    other = await Gateway.open(load_config(est.gw.config.data_dir))
    try:
        await other.store.update_protocol_config("gone", enabled=False)
    finally:
        await other.close()
    assert (await est.get("cacerts", label="gone")).status == 403
