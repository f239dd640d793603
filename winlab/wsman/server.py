"""One simulated host's WinRM listeners: HTTP (NTLM + message encryption) and HTTPS (NTLM with channel
binding, or Basic when enabled), dispatching WS-Management to the host's shell service."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import hmac
import logging
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

import spnego
from spnego.channel_bindings import GssChannelBindings

from winlab.wsman import encryption, soap
from winlab.wsman.clock import Clock
from winlab.wsman.counters import HostCounters, HostFaults
from winlab.wsman.httpio import HttpError, HttpRequest, HttpResponse, read_request
from winlab.wsman.ntlmstore import use_user_file, write_user_file
from winlab.wsman.service import ShellService
from winlab.wsman.shellhost import Principal, ShellHostFactory
from winlab.wsman.spec import CbtMode, HostSpec
from winlab.wsman.tls import HostCertificate, LabAuthority

log = logging.getLogger(__name__)

_SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_NTLM_SIGNATURE = b"NTLMSSP\x00"
_MSV_AV_CHANNEL_BINDINGS = 0x000A


@dataclass
class _Connection:
    """Per-TCP-connection state: NTLM authenticates the connection, not the request."""

    tls: bool
    peer: str
    context: spnego.ContextProxy | None = None
    principal: Principal | None = None  # set once NTLM completed on this connection


def _new_ntlm_exchange(token: bytes) -> bool:
    """True for the first token of a handshake: raw NTLM NEGOTIATE or a SPNEGO NegTokenInit."""
    return token.startswith(_NTLM_SIGNATURE + b"\x01\x00\x00\x00") or token[:1] == b"\x60"


def _client_channel_bindings(token: bytes) -> bytes | None:
    """The MsvAvChannelBindings value inside an NTLM AUTHENTICATE (raw or inside SPNEGO); None if absent."""
    start = token.find(_NTLM_SIGNATURE + b"\x03\x00\x00\x00")
    if start < 0:
        return None
    message = token[start:]
    try:
        nt_len, _, nt_offset = struct.unpack_from("<HHI", message, 20)
        response = message[nt_offset : nt_offset + nt_len]
        pos = 16 + 28  # NTProofStr, then the fixed part of NTLMv2_CLIENT_CHALLENGE
        while pos + 4 <= len(response):
            av_id, av_len = struct.unpack_from("<HH", response, pos)
            if av_id == 0:
                return None
            if av_id == _MSV_AV_CHANNEL_BINDINGS:
                return response[pos + 4 : pos + 4 + av_len]
            pos += 4 + av_len
    except struct.error:
        return None
    return None


class HostServer:
    """The WinRM service of one simulated host.

    Runs on an asyncio loop (the fleet's). Read `counters`, set `faults`; `set_down()` closes and reopens
    the listeners; `set_password()` / `set_accounts()` change who may log on.
    """

    def __init__(
        self,
        spec: HostSpec,
        *,
        lab_dir: Path,
        clock: Clock,
        shell_host_factory: ShellHostFactory,
        authority: LabAuthority | None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.counters = HostCounters()
        self.faults = HostFaults()
        self.accounts: dict[str, str] = dict(spec.accounts)
        self.address = spec.address
        self.http_port: int | None = spec.http_port
        self.https_port: int | None = spec.https_port
        self.certificate: HostCertificate | None = None
        self._authority = authority
        self._user_file = lab_dir / "ntlm" / f"{spec.name}.users"
        write_user_file(self._user_file, spec.name, self.accounts)
        self.service = ShellService(spec, clock, shell_host_factory, self.counters, self.faults)
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self.down = False

    # -- accounts ---------------------------------------------------------------------------------------

    def set_accounts(self, accounts: dict[str, str]) -> None:
        self.accounts = dict(accounts)
        write_user_file(self._user_file, self.spec.name, self.accounts)

    def set_password(self, username: str, password: str) -> None:
        for existing in list(self.accounts):
            if existing.lower() == username.lower():
                del self.accounts[existing]
        self.accounts[username] = password
        write_user_file(self._user_file, self.spec.name, self.accounts)

    def _account(self, domain: str, user: str) -> str | None:
        """The canonical name of a local account, if `domain\\user` designates one on this host."""
        if domain not in ("", ".") and domain.upper() != self.spec.name.upper():
            return None
        return next((a for a in self.accounts if a.lower() == user.lower()), None)

    # -- listeners --------------------------------------------------------------------------------------

    def endpoint(self, scheme: str = "http") -> str:
        port = self.http_port if scheme == "http" else self.https_port
        if port is None:
            raise ValueError(f"{self.name} has no {scheme} listener")
        return f"{scheme}://{self.address}:{port}/wsman"

    def _pick_address(self) -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((self.address, 0))
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            log.warning("%s: cannot bind %s, falling back to 127.0.0.1", self.name, self.address)
            self.address = "127.0.0.1"
            self.http_port = 0 if self.http_port is not None else None
            self.https_port = 0 if self.https_port is not None else None
        finally:
            probe.close()

    async def start(self) -> None:
        if not self._servers and self.certificate is None:
            self._pick_address()
            if self.https_port is not None:
                if self._authority is None:
                    raise ValueError("HTTPS needs the lab authority")
                self.certificate = self._authority.issue(self.name, self.address)
        if self.http_port is not None:
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, tls=False), self.address, self.http_port, limit=64 * 1024
            )
            self.http_port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        if self.https_port is not None and self.certificate is not None:
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, tls=True),
                self.address,
                self.https_port,
                ssl=self.certificate.server_context(),
                limit=64 * 1024,
            )
            self.https_port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        self.down = False

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        self._writers.clear()

    async def set_down(self, down: bool) -> None:
        """Host down: listeners closed (connections refused) and open connections cut; up: reopened."""
        if down and not self.down:
            await self.stop()
            self.down = True
        elif not down and self.down:
            await self.start()

    # -- connections ------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername")
        conn = _Connection(tls=tls, peer=str(peer[0]) if peer else "")
        self._writers.add(writer)
        self.counters.connections += 1
        try:
            while True:
                try:
                    request = await read_request(reader)
                except HttpError as exc:
                    self.counters.requests += 1
                    writer.write(HttpResponse(exc.status, close=True).serialize())
                    await writer.drain()
                    break
                if request is None:
                    break
                response = await self._handle(conn, request)
                if response is None:  # the drop fault: cut the connection, no reply
                    self.counters.dropped_connections += 1
                    writer.transport.abort()
                    return
                writer.write(response.serialize())
                await writer.drain()
                if response.close or not request.keep_alive:
                    break
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # a bug must cost one connection, never the listener
            log.exception("%s: connection handler failed", self.name)
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def _challenge(self, conn: _Connection, token: bytes | None = None) -> HttpResponse:
        headers = [("WWW-Authenticate", "Negotiate" + (" " + base64.b64encode(token).decode() if token else ""))]
        if token is None and conn.tls and self.spec.basic_enabled:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        return HttpResponse(401, headers=headers)

    def _auth_failed(self, conn: _Connection) -> HttpResponse:
        self.counters.auth_failures += 1
        conn.context = None
        return self._challenge(conn)

    def _step_ntlm(self, conn: _Connection, value: str) -> tuple[HttpResponse | None, bytes | None]:
        """One step of NTLM; returns (a 401 to send, None) until done, then (None, final token)."""
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return self._auth_failed(conn), None
        if conn.context is None or _new_ntlm_exchange(token):
            conn.principal = None
            use_user_file(self._user_file)
            conn.context = spnego.server(
                hostname=self.name, service="HTTP", protocol="negotiate", options=spnego.NegotiateOptions.use_negotiate
            )
        bindings = None
        if conn.tls and self.certificate is not None and token.find(_NTLM_SIGNATURE + b"\x03\x00\x00\x00") >= 0:
            sent = _client_channel_bindings(token)
            sent_none = sent is None or sent == b"\x00" * 16
            if sent_none and self.spec.cbt is CbtMode.STRICT:
                return self._auth_failed(conn), None
            if not sent_none:
                bindings = GssChannelBindings(application_data=self.certificate.channel_binding_data)
        if self.faults.reject_logins and token.find(_NTLM_SIGNATURE + b"\x03\x00\x00\x00") >= 0:
            return self._auth_failed(conn), None
        try:
            use_user_file(self._user_file)
            out = conn.context.step(token, channel_bindings=bindings)
        except Exception:  # any malformed or wrong token is a failed login, whatever pyspnego raises
            return self._auth_failed(conn), None
        if not conn.context.complete:
            return self._challenge(conn, out), None
        domain, _, user = (conn.context.client_principal or "").rpartition("\\")
        account = self._account(domain, user)
        if account is None:  # e.g. an account of another host: not ours, however valid its hash
            return self._auth_failed(conn), None
        conn.principal = Principal(self.spec.name, account)
        self.counters.ntlm_logins += 1
        return None, out

    def _basic(self, conn: _Connection, value: str) -> Principal | None:
        if not conn.tls or not self.spec.basic_enabled or self.faults.reject_logins:
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        login, sep, password = decoded.partition(":")
        if not sep:
            return None
        domain, _, user = login.rpartition("\\")
        account = self._account(domain, user)
        if account is None or not hmac.compare_digest(self.accounts[account].encode(), password.encode()):
            return None
        return Principal(self.spec.name, account)

    async def _handle(self, conn: _Connection, request: HttpRequest) -> HttpResponse | None:
        self.counters.requests += 1
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)
        if request.target.split("?")[0].lower() != "/wsman":
            return HttpResponse(404)
        if request.method != "POST":
            return HttpResponse(405, headers=[("Allow", "POST")])

        principal = conn.principal
        final_token: bytes | None = None
        via_basic = False
        authorization = request.header("authorization")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "negotiate":
                challenge, final_token = self._step_ntlm(conn, value)
                if challenge is not None:
                    return challenge
                principal = conn.principal
            elif scheme.lower() == "basic":
                principal = self._basic(conn, value)
                if principal is None:
                    return self._auth_failed(conn)
                via_basic = True
                self.counters.basic_logins += 1
            else:
                return self._auth_failed(conn)
        if principal is None:
            return self._challenge(conn)

        extra: list[tuple[str, str]] = []
        if final_token:
            extra.append(("WWW-Authenticate", "Negotiate " + base64.b64encode(final_token).decode()))
        if not request.body:
            return HttpResponse(200, headers=extra)

        content_type = request.header("content-type") or ""
        sealed = encryption.is_encrypted(content_type)
        if sealed:
            if via_basic or conn.context is None or conn.principal is None:
                return HttpResponse(400, headers=extra)
            try:
                plaintext = encryption.unseal(conn.context, request.body)
            except encryption.EncryptionError:
                return HttpResponse(400, headers=extra)
            self.counters.encrypted_requests += 1
        else:
            if not conn.tls and not via_basic:
                # AllowUnencrypted=false: NTLM over HTTP must seal every message.
                self.counters.plaintext_refused += 1
                return self._challenge(conn)
            plaintext = request.body
        self.counters.soap_requests += 1

        status, reply = await self._dispatch(conn, plaintext, principal)
        if reply is None:
            return None
        headers = list(extra)
        if sealed and conn.context is not None:
            body = encryption.seal(conn.context, reply)
            headers.append(("Content-Type", encryption.CONTENT_TYPE))
        else:
            body = reply
            headers.append(("Content-Type", _SOAP_CONTENT_TYPE))
        return HttpResponse(status, body=body, headers=headers)

    async def _dispatch(self, conn: _Connection, plaintext: bytes, principal: Principal) -> tuple[int, bytes | None]:
        """Run one SOAP request; (status, envelope) or (0, None) to drop the connection."""
        message_id: str | None = None
        try:
            request = soap.parse_request(plaintext)
            message_id = request.message_id
            shell_id = request.selectors.get("ShellId")
            if shell_id and self.service.has_shell(shell_id.upper()) and self.faults.take_drop():
                return 0, None
            scheme = "https" if conn.tls else "http"
            reply = await self.service.handle(request, principal, self.endpoint(scheme), conn.peer)
            return 200, reply
        except soap.WsmanFault as fault:
            self.counters.faults_returned += 1
            relates = message_id or soap.extract_message_id(plaintext)
            return 500, soap.fault_envelope(fault, relates, self.name)
        except Exception:  # a bug in a handler is a fault for that request, not a dead host
            log.exception("%s: request failed", self.name)
            self.counters.faults_returned += 1
            return 500, soap.fault_envelope(soap.fault_internal_error(), message_id, self.name)
