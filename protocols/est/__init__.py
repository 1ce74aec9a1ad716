"""EST (RFC 7030, with RFC 8951 and RFC 9908): enrollment over HTTPS for devices and network gear.

``/.well-known/est/[<label>/]{cacerts,simpleenroll,simplereenroll,serverkeygen,csrattrs,fullcmc}``
on the HTTPS listener; a label is an EST protocol configuration (see :mod:`.policy`).
"""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
