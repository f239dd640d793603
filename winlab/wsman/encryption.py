"""WinRM message encryption over HTTP (MS-WSMV 2.2.9.1.1): multipart/encrypted with an NTLM-sealed part."""

from __future__ import annotations

import re
import struct

import spnego

PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'
_BOUNDARY = b"--Encrypted Boundary"
_OCTET = b"\tContent-Type: application/octet-stream\r\n"
_LENGTH = re.compile(rb"Length=(\d+)")


class EncryptionError(Exception):
    """The body is not a well-formed sealed message for this connection's security context."""


def is_encrypted(content_type: str) -> bool:
    lowered = content_type.lower()
    return lowered.startswith("multipart/encrypted") and PROTOCOL.lower() in lowered


def unseal(context: spnego.ContextProxy, body: bytes) -> bytes:
    """Decrypt and verify one request body; every failure is an EncryptionError."""
    first = body.find(_BOUNDARY + b"\r\n")
    octet = body.find(_OCTET)
    end = body.rfind(_BOUNDARY + b"--")
    if first != 0 or octet < 0 or end < octet:
        raise EncryptionError("not a multipart/encrypted body")
    length_match = _LENGTH.search(body[:octet])
    if not length_match:
        raise EncryptionError("no OriginalContent length")
    expected = int(length_match.group(1))
    payload = body[octet + len(_OCTET) : end]
    if len(payload) < 4:
        raise EncryptionError("sealed part too short")
    (header_length,) = struct.unpack("<I", payload[:4])
    if header_length != 16 or len(payload) < 4 + header_length:
        raise EncryptionError("bad signature length")
    signature = payload[4 : 4 + header_length]
    try:
        plaintext = context.unwrap_winrm(signature, payload[4 + header_length :])
    except Exception as exc:  # pyspnego raises several types for a bad seal/signature
        raise EncryptionError(str(exc)) from exc
    if len(plaintext) != expected:
        raise EncryptionError("length mismatch")
    return plaintext


def seal(context: spnego.ContextProxy, plaintext: bytes) -> bytes:
    """Encrypt a reply in the same format the client used."""
    wrapped = context.wrap_winrm(plaintext)
    header, data = wrapped.header, wrapped.data
    return (
        _BOUNDARY + b"\r\n"
        b"\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(plaintext)).encode()
        + b"\r\n"
        + _BOUNDARY
        + b"\r\n"
        + _OCTET
        + struct.pack("<I", len(header))
        + header
        + data
        + _BOUNDARY
        + b"--\r\n"
    )
