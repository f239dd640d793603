"""The WinRS shell service of one host: Create / Command / Send / Receive / Signal / Delete."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from winlab.wsman import soap
from winlab.wsman.clock import Clock
from winlab.wsman.cmdexe import codec_for, default_environment, interpret
from winlab.wsman.commands import CTRL_C_EXIT, Command
from winlab.wsman.counters import HostCounters, HostFaults
from winlab.wsman.shellhost import Principal, ShellHost, ShellHostFactory
from winlab.wsman.spec import HostSpec

# Windows defaults: Shell/IdleTimeout 7200000 ms; Service/MaxTimeoutms 60000.
DEFAULT_IDLE_TIMEOUT_S = 7200.0
DEFAULT_OPERATION_TIMEOUT_S = 60.0
SIGNAL_TERMINATE = soap.NS_RSP + "/signal/terminate"
SIGNAL_CTRL_C = soap.NS_RSP + "/signal/ctrl_c"
SIGNAL_PS_CTRL_C = "http://schemas.microsoft.com/powershell/signal/crtl_c"
STATE_DONE = soap.NS_RSP + "/CommandState/Done"
STATE_RUNNING = soap.NS_RSP + "/CommandState/Running"
_KNOWN_ACTIONS = {
    soap.ACTION_CREATE,
    soap.ACTION_DELETE,
    soap.ACTION_COMMAND,
    soap.ACTION_SEND,
    soap.ACTION_RECEIVE,
    soap.ACTION_SIGNAL,
}


@dataclass
class Shell:
    """One open cmd shell."""

    id: str
    owner: Principal
    host: ShellHost
    codepage: int
    noprofile: bool
    idle_timeout_s: float
    last_activity: float
    created: float
    environment: dict[str, str]
    input_streams: str
    output_streams: str
    commands: dict[str, Command] = field(default_factory=dict)


def _rsp(tag: str) -> str:
    return f"{{{soap.NS_RSP}}}{tag}"


class ShellService:
    """Shells of one host, keyed by ShellId; idle shells expire by the injected clock."""

    def __init__(
        self,
        spec: HostSpec,
        clock: Clock,
        factory: ShellHostFactory,
        counters: HostCounters,
        faults: HostFaults,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.factory = factory
        self.counters = counters
        self.faults = faults
        self.shells: dict[str, Shell] = {}

    def expire_idle_shells(self) -> int:
        """Drop shells idle for longer than their IdleTimeOut; returns how many went."""
        now = self.clock.now()
        expired = [s.id for s in self.shells.values() if now - s.last_activity >= s.idle_timeout_s]
        for shell_id in expired:
            self.shells.pop(shell_id, None)
        return len(expired)

    def has_shell(self, shell_id: str) -> bool:
        self.expire_idle_shells()
        return shell_id in self.shells

    def check_request(self, request: soap.WsmanRequest, principal: Principal) -> None:
        """Checks Windows makes before dispatching: the action, the resource, the caller's right to use WinRM."""
        if request.action not in _KNOWN_ACTIONS:
            raise soap.fault_action_not_supported(request.action)
        if request.resource_uri.lower() != soap.RESOURCE_CMD.lower():
            raise soap.fault_resource_not_found(request.resource_uri)
        if principal.username.lower() in {u.lower() for u in self.spec.denied_users}:
            raise soap.fault_access_denied()

    async def handle(self, request: soap.WsmanRequest, principal: Principal, endpoint: str, client_ip: str) -> bytes:
        """Run one request; returns the reply envelope or raises WsmanFault."""
        self.check_request(request, principal)
        self.expire_idle_shells()
        if request.action == soap.ACTION_CREATE:
            return self._create(request, principal, endpoint, client_ip)
        shell = self._shell(request, principal)
        shell.last_activity = self.clock.now()
        if request.action == soap.ACTION_DELETE:
            self.shells.pop(shell.id, None)
            return soap.envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", request.message_id, ""
            )
        if request.action == soap.ACTION_COMMAND:
            return self._command(request, shell)
        if request.action == soap.ACTION_SEND:
            return self._send(request, shell)
        if request.action == soap.ACTION_SIGNAL:
            return self._signal(request, shell)
        return await self._receive(request, shell)

    def _shell(self, request: soap.WsmanRequest, principal: Principal) -> Shell:
        shell_id = request.selectors.get("ShellId")
        if not shell_id:
            raise soap.fault_missing_shell_selector()
        shell = self.shells.get(shell_id.upper())
        # Shells belong to the user who created them: to anyone else they do not exist.
        if shell is None or shell.owner != principal:
            raise soap.fault_shell_not_found(shell_id)
        return shell

    def _create(self, request: soap.WsmanRequest, principal: Principal, endpoint: str, client_ip: str) -> bytes:
        body = request.body
        if body is None or body.tag != _rsp("Shell"):
            raise soap.fault_invalid_parameter()
        try:
            codepage = int(request.options.get("WINRS_CODEPAGE", "437"))
            "".encode(codec_for(codepage))
        except (ValueError, LookupError) as exc:
            raise soap.fault_invalid_parameter() from exc
        idle = DEFAULT_IDLE_TIMEOUT_S
        idle_el = body.find(_rsp("IdleTimeOut"))
        if idle_el is not None and idle_el.text:
            parsed = soap.parse_duration(idle_el.text)
            if parsed is None:
                try:
                    parsed = float(idle_el.text) / 1000.0
                except ValueError as exc:
                    raise soap.fault_invalid_parameter() from exc
            idle = parsed
        host = self.factory(self.spec, principal)
        env = default_environment(host)
        env_el = body.find(_rsp("Environment"))
        if env_el is not None:
            for var in env_el.findall(_rsp("Variable")):
                name = var.get("Name")
                if name:
                    env[name] = var.text or ""
        now = self.clock.now()
        shell = Shell(
            id=str(uuid.uuid4()).upper(),
            owner=principal,
            host=host,
            codepage=codepage,
            noprofile=request.options.get("WINRS_NOPROFILE", "FALSE").upper() == "TRUE",
            idle_timeout_s=idle,
            last_activity=now,
            created=now,
            environment=env,
            input_streams=_text(body, "InputStreams") or "stdin",
            output_streams=_text(body, "OutputStreams") or "stdout stderr",
        )
        self.shells[shell.id] = shell
        self.counters.shells_created += 1
        reply = (
            f"<x:ResourceCreated><a:Address>{escape(endpoint)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{soap.RESOURCE_CMD}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f"</x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId>"
            f"<rsp:ResourceUri>{soap.RESOURCE_CMD}</rsp:ResourceUri><rsp:Owner>{escape(str(principal))}</rsp:Owner>"
            f"<rsp:ClientIP>{escape(client_ip)}</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>{soap.format_duration(idle)}</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(shell.input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(shell.output_streams)}</rsp:OutputStreams>"
            "<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )
        return soap.envelope(soap.ACTION_CREATE + "Response", request.message_id, reply)

    def _command(self, request: soap.WsmanRequest, shell: Shell) -> bytes:
        body = request.body
        if body is None or body.tag != _rsp("CommandLine"):
            raise soap.fault_invalid_parameter()
        command = _text(body, "Command")
        if command is None:
            raise soap.fault_invalid_parameter()
        arguments = [a.text or "" for a in body.findall(_rsp("Arguments"))]
        line = " ".join([command, *arguments]) if arguments else command
        command_id = (body.get("CommandId") or str(uuid.uuid4())).upper()
        plan = interpret(line, shell.host, shell.codepage, shell.environment)
        loop = asyncio.get_running_loop()
        shell.commands[command_id] = Command(command_id, plan, shell.host, shell.codepage, loop.time)
        self.counters.commands_run += 1
        reply = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
        return soap.envelope(soap.ACTION_COMMAND + "Response", request.message_id, reply)

    def _find_command(self, shell: Shell, command_id: str | None) -> Command:
        command = shell.commands.get((command_id or "").upper())
        if command is None:
            raise soap.fault_invalid_parameter()
        return command

    def _send(self, request: soap.WsmanRequest, shell: Shell) -> bytes:
        body = request.body
        if body is None or body.tag != _rsp("Send"):
            raise soap.fault_invalid_parameter()
        for stream in body.findall(_rsp("Stream")):
            if stream.get("Name", "stdin") != "stdin":
                raise soap.fault_invalid_parameter()
            command = self._find_command(shell, stream.get("CommandId"))
            try:
                data = base64.b64decode((stream.text or "").strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise soap.fault_invalid_parameter() from exc
            command.send_stdin(data, (stream.get("End") or "false").lower() == "true")
        return soap.envelope(soap.ACTION_SEND + "Response", request.message_id, "<rsp:SendResponse/>")

    def _signal(self, request: soap.WsmanRequest, shell: Shell) -> bytes:
        body = request.body
        if body is None or body.tag != _rsp("Signal"):
            raise soap.fault_invalid_parameter()
        code = _text(body, "Code") or ""
        command = self._find_command(shell, body.get("CommandId"))
        if code == SIGNAL_TERMINATE:
            command.stop(exit_code=CTRL_C_EXIT)
            shell.commands.pop(command.id, None)
        elif code in (SIGNAL_CTRL_C, SIGNAL_PS_CTRL_C):
            command.stop(exit_code=CTRL_C_EXIT)
        else:
            raise soap.fault_invalid_parameter()
        return soap.envelope(soap.ACTION_SIGNAL + "Response", request.message_id, "<rsp:SignalResponse/>")

    async def _receive(self, request: soap.WsmanRequest, shell: Shell) -> bytes:
        body = request.body
        if body is None or body.tag != _rsp("Receive"):
            raise soap.fault_invalid_parameter()
        desired = body.find(_rsp("DesiredStream"))
        command = self._find_command(shell, desired.get("CommandId") if desired is not None else None)
        if self.faults.take_receive_timeout():
            raise soap.fault_timed_out()
        timeout = request.operation_timeout_s or DEFAULT_OPERATION_TIMEOUT_S
        # Room for output in one reply: the envelope limit, less its XML, less base64's growth.
        budget = max(1024, (request.max_envelope_size - 2048) * 3 // 4)
        result = await command.receive(budget, timeout)
        shell.last_activity = self.clock.now()
        if result is None:
            raise soap.fault_timed_out()
        cid = quoteattr(command.id)
        parts: list[str] = []
        for stream, data in result.pieces:
            parts.append(
                f'<rsp:Stream Name="{stream}" CommandId={cid}>{base64.b64encode(data).decode("ascii")}</rsp:Stream>'
            )
        if result.done:
            parts.append(f'<rsp:Stream Name="stdout" CommandId={cid} End="true"></rsp:Stream>')
            parts.append(f'<rsp:Stream Name="stderr" CommandId={cid} End="true"></rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId={cid} State="{STATE_DONE}">'
                f"<rsp:ExitCode>{result.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState CommandId={cid} State="{STATE_RUNNING}"></rsp:CommandState>')
        reply = "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
        return soap.envelope(soap.ACTION_RECEIVE + "Response", request.message_id, reply)


def _text(parent: ET.Element, tag: str) -> str | None:
    el = parent.find(_rsp(tag))
    return None if el is None or el.text is None else el.text.strip()
