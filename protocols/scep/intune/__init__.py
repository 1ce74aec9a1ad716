"""Microsoft Intune as the SCEP challenge authority: the client for its validation, notification and revocation API (:mod:`.client`)."""
