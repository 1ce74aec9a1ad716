"""Edge plumbing shared by every protocol: CMS (:mod:`.cms`), DER (:mod:`.der`), safe XML
(:mod:`.xml`), HTTP Basic credentials (:mod:`.basic`) and size-limited bodies (:mod:`.body`).

Usable from the core and from ``protocols/``: these modules import only
``gateway.errors``, ``gateway.keys`` and third-party libraries (no store, no door).
Errors are typed :class:`~gateway.errors.GatewayError` subclasses; each protocol maps
them to its own wire form.
"""
