"""The emulated Windows host (SIDs, security descriptors, accounts, rights, services, MailEnable).

See winlab/README.md, "The emulated Windows". Pure Python: no Django, no network, no sleeping.
"""
