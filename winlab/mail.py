"""MailEnable's SMTP, POP and IMAP ports for emulated hosts: banners and the basic exchange.

A port listens only while its service runs in the model (and the host is up): `reconcile()`
opens and closes listeners to match, and every connection re-checks the service, so a service
that stopped a moment ago refuses (or cuts) the connection. One asyncio loop in a daemon thread
serves every host; each host listens on its own loopback address. Sessions are bounded (line
length, number of commands, idle timeout) and everything stops with `stop()`.

SMTP speaks what `winlab.windows.smtp` models (relay policy, AUTH advertisement, STARTTLS) with the
endpoint's `SmtpSettings`; STARTTLS is a real TLS upgrade of the connection (`StreamWriter.start_tls`)
with a certificate the lab CA issues to match the settings (`configure_smtp`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import logging
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from winlab.windows.errors import Win32Error
from winlab.windows.host import PROTOCOL_SERVICES, WindowsHost
from winlab.windows.mailenable import REGISTRY_KEY
from winlab.windows.smtp import SmtpConversation, SmtpSettings, edition_has_ssl
from winlab.wsman.tls import HostCertificate, LabAuthority

log = logging.getLogger(__name__)
T = TypeVar("T")
Protocol = Literal["smtp", "pop", "imap"]
PROTOCOLS: Final[tuple[Protocol, ...]] = ("smtp", "pop", "imap")
DEFAULT_PORTS: Final[dict[Protocol, int]] = {"smtp": 2525, "pop": 2110, "imap": 2143}
MAX_LINE: Final = 1024
MAX_COMMANDS: Final = 50
IDLE_TIMEOUT_S: Final = 30.0


@dataclass
class MailEndpoint:
    """One host's mail ports: where they listen and whether they may answer now."""

    name: str
    host: WindowsHost
    lock: threading.RLock
    address: str
    ports: dict[Protocol, int]
    down: Callable[[], bool]
    servers: dict[Protocol, asyncio.Server] = field(default_factory=dict)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    # The certificate STARTTLS presents and its server context: None = STARTTLS not offered (no
    # certificate configured, or an edition without SSL). Set by `configure_smtp`.
    smtp_certificate: HostCertificate | None = None
    smtp_tls: ssl.SSLContext | None = None

    def running(self, protocol: Protocol) -> bool:
        if self.down():
            return False
        with self.lock:
            return self.host.services.get(PROTOCOL_SERVICES[protocol]).running

    def configure_smtp(self, settings: SmtpSettings, authority: LabAuthority) -> None:
        """Apply `settings`: the relay and AUTH policy at once, and a certificate issued to match them.

        Validity is counted from real time (the probe and the rules judge a certificate by the wall clock,
        as they would a real host's). New connections see the change; open sessions keep what they had.
        """
        with self.lock:
            install = self.host.mailenable.install
            has_ssl = edition_has_ssl(install.edition.value, install.major)
            smtp_host = _smtp_host_name(self.host)
        certificate = None
        if has_ssl and settings.certificate_days is not None:
            now = datetime.datetime.now(datetime.UTC)
            not_after = now + datetime.timedelta(days=settings.certificate_days)
            not_before = min(now - datetime.timedelta(hours=1), not_after - datetime.timedelta(days=365))
            wrong = settings.certificate_name
            certificate = authority.issue(
                wrong or smtp_host,
                None if wrong else self.address,
                dns_names=[wrong] if wrong else [smtp_host, self.host.name.lower()],
                not_before=not_before,
                not_after=not_after,
                file_stem=f"{self.name}-smtp",
            )
        with self.lock:
            self.smtp = settings
            self.smtp_certificate = certificate
            self.smtp_tls = certificate.server_context() if certificate is not None else None


class MailPorts:
    """Every host's mail listeners on one loop (see the module docstring)."""

    def __init__(self) -> None:
        self.endpoints: dict[str, MailEndpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._poller: asyncio.Task[None] | None = None

    def add(self, endpoint: MailEndpoint) -> None:
        self.endpoints[endpoint.name.upper()] = endpoint

    def start(self, poll_s: float = 1.0) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="winlab-mail", daemon=True)
        self._thread.start()
        ready.wait()
        self._run(self._reconcile_all())
        if poll_s > 0:
            self._poller = self._run(self._start_poller(poll_s))

    async def _start_poller(self, poll_s: float) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._poll(poll_s))

    async def _poll(self, poll_s: float) -> None:
        # Clock-driven changes (a service crashing after its settling delay, a GPO refresh) have no
        # caller to trigger a reconcile: look once a second.
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self._reconcile_all()
            except Exception:  # a model error must not kill the poller
                log.exception("mail port reconcile failed")

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("mail ports not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def reconcile(self, name: str | None = None) -> None:
        """Open the ports whose services run, close the others (all hosts, or one)."""
        if self._loop is None:
            return
        if name is None:
            self._run(self._reconcile_all())
        else:
            self._run(self._reconcile(self.endpoints[name.upper()]))

    async def _reconcile_all(self) -> None:
        for endpoint in list(self.endpoints.values()):
            await self._reconcile(endpoint)

    async def _reconcile(self, endpoint: MailEndpoint) -> None:
        for protocol in PROTOCOLS:
            wanted = endpoint.running(protocol)
            server = endpoint.servers.get(protocol)
            if wanted and server is None:
                await self._open(endpoint, protocol)
            elif not wanted and server is not None:
                server.close()
                await server.wait_closed()
                del endpoint.servers[protocol]

    async def _open(self, endpoint: MailEndpoint, protocol: Protocol) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _session(endpoint, protocol, reader, writer)

        try:
            server = await asyncio.start_server(serve, endpoint.address, endpoint.ports[protocol], limit=MAX_LINE * 4)
        except OSError as exc:
            log.warning("%s: cannot listen for %s on %s:%s: %s", endpoint.name, protocol, endpoint.address,
                        endpoint.ports[protocol], exc)  # fmt: skip
            return
        endpoint.ports[protocol] = server.sockets[0].getsockname()[1]
        endpoint.servers[protocol] = server

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close_all() -> None:
            if self._poller is not None:
                self._poller.cancel()
            for endpoint in self.endpoints.values():
                for server in endpoint.servers.values():
                    server.close()
                endpoint.servers.clear()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._run(close_all(), timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = None
        self._thread = None


def _smtp_host_name(host: WindowsHost) -> str:
    """MailEnable's SMTP `Host Name` (Connectors\\SMTP), or the computer name where it is not set."""
    try:
        value = host.registry.open(f"{REGISTRY_KEY}\\Connectors\\SMTP", view=32).get("Host Name")
    except Win32Error:
        value = None
    return str(value) if value else host.name.lower()


def _greeting(endpoint: MailEndpoint, protocol: Protocol) -> str:
    with endpoint.lock:
        me = endpoint.host.mailenable
        if protocol == "smtp":
            return me.smtp_banner(endpoint.host.name)
        return me.pop_banner() if protocol == "pop" else me.imap_banner()


def _smtp_conversation(endpoint: MailEndpoint, peer: str) -> SmtpConversation:
    with endpoint.lock:
        return SmtpConversation(
            host_name=endpoint.host.name,
            peer=peer,
            settings=endpoint.smtp,
            local_domains=endpoint.host.mailenable.install.postoffices,
            tls_available=endpoint.smtp_tls is not None,
        )


def _answer(endpoint: MailEndpoint, protocol: Protocol, line: str, peer: str) -> tuple[str, bool]:
    """(reply, close afterwards) for one command line; SMTP as the first command of a new session
    (a session of several commands keeps its `SmtpConversation`)."""
    if protocol == "smtp":
        reply = _smtp_conversation(endpoint, peer).answer(line)
        return reply.text, reply.close
    if protocol == "pop":
        verb = line.split(" ", 1)[0].upper()
        if verb == "CAPA":
            return "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\n.", False
        if verb == "NOOP":
            return "+OK", False
        if verb == "QUIT":
            return "+OK POP3 server signing off", True
        return "-ERR Invalid command", False
    tag, _, rest = line.partition(" ")
    verb = rest.split(" ", 1)[0].upper()
    if verb == "CAPABILITY":
        return f"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n{tag} OK CAPABILITY completed", False
    if verb == "NOOP":
        return f"{tag} OK NOOP completed", False
    if verb == "LOGOUT":
        return f"* BYE IMAP4rev1 Server logging out\r\n{tag} OK LOGOUT completed", True
    return f"{tag} BAD Command not recognized", False


async def _session(
    endpoint: MailEndpoint, protocol: Protocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    peer = str((writer.get_extra_info("peername") or ("?",))[0])
    smtp = _smtp_conversation(endpoint, peer) if protocol == "smtp" else None
    tls_context = endpoint.smtp_tls
    try:
        if not endpoint.running(protocol):
            writer.transport.abort()  # the service stopped since the listener opened: connection reset
            return
        writer.write((_greeting(endpoint, protocol) + "\r\n").encode("ascii", errors="replace"))
        await writer.drain()
        for _ in range(MAX_COMMANDS):
            try:
                raw = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
            except (TimeoutError, ValueError):
                break
            if not raw:
                break
            if not endpoint.running(protocol):
                writer.transport.abort()
                return
            line = raw.decode("ascii", errors="replace").strip()[:MAX_LINE]
            if smtp is None:
                reply, close = _answer(endpoint, protocol, line, peer)
                start_tls = False
            else:
                answer = smtp.answer(line)
                reply, close, start_tls = answer.text, answer.close, answer.start_tls
            writer.write((reply + "\r\n").encode("ascii", errors="replace"))
            await writer.drain()
            if close:
                break
            if start_tls and smtp is not None and tls_context is not None:
                try:
                    await asyncio.wait_for(writer.start_tls(tls_context), IDLE_TIMEOUT_S)
                except (TimeoutError, ssl.SSLError):
                    writer.transport.abort()
                    return
                smtp.tls_started()
    except (ConnectionError, OSError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()
