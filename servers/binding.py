"""Which connection a credential was bound to, so an edit cannot send it somewhere else.

Audit finding (security-audit-2026-12, "credential capture"): whoever may edit a server could point
its address, port, scheme or TLS trust at a host of their own, keep the customer's credential, and
press "Test connection" — the worker then sent a Basic password, or an NTLM response to crack or
relay. Credentials are "create, replace; never read" and MSP-admin only (DESIGN.md), so *where* a
credential is sent is part of the credential:

- only a user with `manage_credentials` binds a credential to a server (chooses it, or saves the
  connection settings of a server that has one); `credential_binding` then holds the digest of
  the connection settings and the credential at that moment;
- an edit of those settings by anyone else unbinds the credential (`servers.services`); the form
  does not offer the credential to them at all;
- the transport side (`jobs.runner.connection_for`, the only place a credential is decrypted for a
  connection) refuses a server whose settings no longer match the digest — whatever path changed
  them (the Django admin, a bulk update, a bug): it raises before any network connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from servers.models import Server

# The settings that decide where a credential goes and whom the worker trusts to be that host.
BOUND_FIELDS = (
    "customer_id",
    "credential_id",
    "address",
    "winrm_scheme",
    "winrm_port",
    "tls_verify",
    "tls_ca_bundle",
    "tls_fingerprint",
)
# The same as form fields (a foreign key without its "_id").
CONNECTION_FIELDS = tuple(name.removesuffix("_id") for name in BOUND_FIELDS)


def binding_of(server: Server) -> str:
    """SHA-256 (hex) of the bound settings as they are now; "" for a server without a credential."""
    if server.credential_id is None:
        return ""
    values = [str(getattr(server, name) or "") for name in BOUND_FIELDS]
    return hashlib.sha256(json.dumps(["fleet-binding/1", *values]).encode("utf-8")).hexdigest()


def bind(server: Server) -> None:
    """Record the current settings as where this server's credential may go (not saved here)."""
    server.credential_binding = binding_of(server)


def is_bound(server: Server) -> bool:
    """The server has a credential and its settings are those it was bound with."""
    if server.credential_id is None or not server.credential_binding:
        return False
    return hmac.compare_digest(server.credential_binding, binding_of(server))
