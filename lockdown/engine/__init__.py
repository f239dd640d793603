"""The agent engine: every decision about a host, in pure Python (no Django, no pywinrm).

The host side (`lockdown/agent/*.ps1`, or winlab's emulation) only runs *programs*: ordered
steps, each one call of a policy-free primitive (`lockdown.engine.program.PRIMITIVES`). The
engine builds the programs from a plan and what the host observed, and reads their results.
"""
