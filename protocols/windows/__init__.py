"""Windows enrollment: MS-XCEP policy (CEP) and MS-WSTEP enrollment (CES) web services.

A drop-in for AD CS's CEP/CES: the paths AD CS uses (``/ADPolicyProvider_CEP_*/service.svc/CEP``,
``/<CA>_CES_*/service.svc/CES``) and the gateway's own under ``/windows/<config>/``
(:mod:`.paths`), SOAP 1.2 with WS-Addressing (:mod:`.soap`) over a hardened XML
parser (:mod:`.xml`), templates from gateway profiles (:mod:`.templates`). What differs
from AD CS: ``DIVERGENCES.md``.
"""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
