"""The admin API (JSON over HTTPS): CAs, profiles, protocol configurations, certificates,
end entities, the approval queue and the audit trail. See :func:`create_admin_app`."""

from .api import create_admin_app

__all__ = ["create_admin_app"]
