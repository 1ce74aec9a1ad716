"""Conformance against a simulated Microsoft Intune (Entra ID tokens, Graph discovery, SCEP validation, revocation)."""
