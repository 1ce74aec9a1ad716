"""Edge plumbing shared by every protocol: CMS (:mod:`.cms`), DER (:mod:`.der`) and
HTTP Basic credentials (:mod:`.basic`).

Usable from the core and from ``protocols/``: these modules import only
``gateway.errors``, ``gateway.keys`` and third-party libraries (no store, no door).
Errors are typed :class:`~gateway.errors.GatewayError` subclasses; each protocol maps
them to its own wire form.
"""
