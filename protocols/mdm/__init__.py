"""The MDM web service (Jamf Pro, Workspace ONE, Ivanti, MaaS360): digital IDs, RDN
formats, credentials, PKCS#12 enrollment and SCEP challenges over SOAP (``service.py``)."""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
