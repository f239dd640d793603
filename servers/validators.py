"""Validation of what operators type about a host: addresses, fingerprints, certificates."""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from django.core.exceptions import ValidationError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_host_address(value: str) -> None:
    """A DNS name (RFC 1123) or an IPv4/IPv6 address; no scheme, port, path or spaces."""
    if not value or len(value) > 253:
        raise ValidationError("Enter a host name or IP address (at most 253 characters).")
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(
            "%(value)s is not a valid host name or IP address (letters, digits, hyphens and dots only).",
            params={"value": value[:80]},
        )


def normalise_fingerprint(value: str) -> str:
    return value.strip().lower().replace(":", "").replace(" ", "")


def validate_fingerprint(value: str) -> None:
    if not _FINGERPRINT.match(normalise_fingerprint(value)):
        raise ValidationError("A SHA-256 certificate fingerprint is 64 hexadecimal digits (colons allowed).")


def validate_pem_bundle(value: str) -> None:
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise ValidationError("Paste one or more PEM certificates (-----BEGIN CERTIFICATE-----).")
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValidationError("The CA bundle is not valid PEM.") from None
    if not certificates:
        raise ValidationError("The CA bundle holds no certificate.")


def validate_no_control_characters(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Control characters are not allowed.")
