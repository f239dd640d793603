"""What cmd.exe does with a WinRM command line: a few built-ins, powershell.exe, and its refusals."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from winlab.wsman.shellhost import ShellHost

# cmd.exe refuses command lines longer than this (after variable expansion).
CMD_MAX_LINE = 8191
# powershell.exe's exit code for an unusable command line (parameter binding failure).
POWERSHELL_BAD_ARGS_EXIT = -196608


@dataclass(frozen=True)
class Finished:
    """A command whose whole output is known at once."""

    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclass(frozen=True)
class RunPowerShell:
    """powershell.exe with a script (None: the script arrives on stdin, `-Command -`)."""

    script: str | None


def encode_for_console(text: str, codepage: int) -> bytes:
    """Console output in a code page: characters it lacks become '?', as a Windows console does."""
    return text.encode(codec_for(codepage), errors="replace")


def codec_for(codepage: int) -> str:
    return "utf-8" if codepage == 65001 else f"cp{codepage}"


def split_command_line(line: str) -> list[str]:
    """Split like CommandLineToArgvW for the common cases (quotes group, are removed)."""
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    has_token = False
    for ch in line:
        if ch == '"':
            in_quotes = not in_quotes
            has_token = True
        elif ch in " \t" and not in_quotes:
            if has_token:
                args.append("".join(current))
                current = []
                has_token = False
        else:
            current.append(ch)
            has_token = True
    if has_token:
        args.append("".join(current))
    return args


_VAR = re.compile(r"%([^%\s]+)%")


def expand_variables(line: str, env: Mapping[str, str]) -> str:
    """cmd /c semantics: %NAME% is replaced when defined (case-insensitive), left alone otherwise."""
    upper = {k.upper(): v for k, v in env.items()}
    return _VAR.sub(lambda m: upper.get(m.group(1).upper(), m.group(0)), line)


def default_environment(host: ShellHost) -> dict[str, str]:
    return {
        "COMPUTERNAME": host.hostname.upper(),
        "USERNAME": host.user.username,
        "USERDOMAIN": host.user.domain,
        "OS": "Windows_NT",
        "PROCESSOR_ARCHITECTURE": "AMD64",
        "SystemRoot": "C:\\Windows",
        "windir": "C:\\Windows",
        "SystemDrive": "C:",
        "ComSpec": "C:\\Windows\\system32\\cmd.exe",
    }


def _text(stdout: str = "", stderr: str = "", exit_code: int = 0, *, codepage: int) -> Finished:
    return Finished(encode_for_console(stdout, codepage), encode_for_console(stderr, codepage), exit_code)


def interpret(line: str, host: ShellHost, codepage: int, env: Mapping[str, str]) -> Finished | RunPowerShell:
    """Decide what a command line does. `line` is Command plus Arguments as WinRM received them."""
    expanded = expand_variables(line, env)
    if len(expanded) > CMD_MAX_LINE:
        return _text(stderr="The command line is too long.\r\n", exit_code=1, codepage=codepage)
    stripped = expanded.strip(" \t")
    if not stripped:
        return _text(codepage=codepage)
    # cmd.exe lets `echo` touch its argument with no separator (echo. echo, echo:).
    lowered = stripped.lower()
    if lowered.startswith("echo") and (len(stripped) == 4 or stripped[4] in " \t.,:;/("):
        rest = stripped[5:]
        if len(stripped) == 4 or (stripped[4] in " \t" and not rest.strip()):
            return _text("ECHO is on.\r\n", codepage=codepage)
        return _text(rest + "\r\n", codepage=codepage)
    args = split_command_line(stripped)
    program = args[0]
    name = re.split(r"[\\/]", program)[-1].lower()
    for suffix in (".exe", ".com"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name == "hostname":
        return _text(host.hostname + "\r\n", codepage=codepage)
    if name == "whoami":
        if len(args) > 1:
            return _text(
                stderr=f"ERROR: Invalid argument/option - '{args[1]}'.\r\nType \"WHOAMI /?\" for usage.\r\n",
                exit_code=1,
                codepage=codepage,
            )
        return _text(f"{host.user.domain.lower()}\\{host.user.username.lower()}\r\n", codepage=codepage)
    if name == "ver" and program.lower() == "ver":
        return _text(f"\r\nMicrosoft Windows [Version {host.os_version}]\r\n", codepage=codepage)
    if name == "chcp" and len(args) == 1:
        return _text(f"Active code page: {codepage}\r\n", codepage=codepage)
    if name == "powershell":
        return _powershell(args[1:], codepage)
    return _text(
        stderr=f"'{program}' is not recognized as an internal or external command,\r\n"
        "operable program or batch file.\r\n",
        exit_code=1,
        codepage=codepage,
    )


_FLAGS = ("noprofile", "nop", "noninteractive", "noni", "nologo", "sta", "mta", "noexit")
_WITH_VALUE = ("executionpolicy", "ep", "inputformat", "inp", "if", "outputformat", "of", "windowstyle", "version")


def _matches(name: str, options: tuple[str, ...]) -> bool:
    return any(opt == name or (len(name) >= 2 and opt.startswith(name)) for opt in options)


def _powershell(args: list[str], codepage: int) -> Finished | RunPowerShell:
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith(("-", "/")) or arg == "-":
            break
        name = arg[1:].lower()
        if name == "ec" or (name and "encodedcommand".startswith(name)):
            if i + 1 >= len(args):
                return _bad_args(
                    "Cannot process the command because of a missing parameter. A command must follow -EncodedCommand.",
                    codepage,
                )
            try:
                raw = base64.b64decode(args[i + 1], validate=True)
                return RunPowerShell(raw.decode("utf-16-le"))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return _bad_args(
                    "Cannot process the command because the value specified with -EncodedCommand is not "
                    "properly encoded. The value must be Base64 encoded.",
                    codepage,
                )
        if name in ("c", "command") or (len(name) >= 2 and "command".startswith(name)):
            rest = args[i + 1 :]
            if rest == ["-"]:
                return RunPowerShell(None)
            return RunPowerShell(" ".join(rest))
        if name in ("f", "file") or (len(name) >= 2 and "file".startswith(name)):
            return _bad_args("winlab does not emulate script files (-File).", codepage)
        if _matches(name, _FLAGS):
            i += 1
            continue
        if _matches(name, _WITH_VALUE) or name == "ex":
            i += 2
            continue
        break
    rest = args[i:]
    if not rest or rest == ["-"]:
        return RunPowerShell(None)
    return RunPowerShell(" ".join(rest))


def _bad_args(message: str, codepage: int) -> Finished:
    return _text(stderr=message + "\r\n", exit_code=POWERSHELL_BAD_ARGS_EXIT, codepage=codepage)
