"""Labels are cached per configuration generation: a change made by another process
(a second worker, a replica, the CLI) is seen on the very next request. Users are
not cached at all: they are checked against the store on every request."""

from __future__ import annotations

from gateway.config import load_config
from gateway.runtime import Gateway

from .helpers import EstServer, b64, core, make_csr, set_users


async def test_a_change_made_by_another_process_is_seen_on_the_next_request(est: EstServer) -> None:
    await est.label("edit", users={"user": "p"})
    csr, _ = make_csr("edit-1")
    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("user", "p"))).status == 200
    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("user", "p"))).status == 200  # cached

    other = await Gateway.open(load_config(est.gw.config.data_dir))  # its own store engine, as a worker has
    try:
        door = other.door("est")
        await door.update_configuration("edit", settings={"approval": "manual", "retry_after": 9})
        await set_users(other, "edit", {"viewer": "q"})
    finally:
        await other.close()

    assert (await est.post("simpleenroll", b64(csr), label="edit", auth=("user", "p"))).status == 401
    held = await est.post("simpleenroll", b64(make_csr("edit-2")[0]), label="edit", auth=("viewer", "q"))
    assert held.status == 202 and held.headers["Retry-After"] == "9"


async def test_a_label_disabled_elsewhere_is_refused_on_the_next_request(est: EstServer) -> None:
    await est.label("gone", users={"user": "p"})
    assert (await est.get("cacerts", label="gone")).status == 200
    other = await Gateway.open(load_config(est.gw.config.data_dir))
    try:
        await core(other).update_config("gone", enabled=False)
    finally:
        await other.close()
    assert (await est.get("cacerts", label="gone")).status == 403
