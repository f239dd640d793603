"""Reports: compliance trends, signed PDF/CSV reports, the installation's signing key, verification.

Its own app because reports are their own domain with their own lifecycle: a report is a
frozen, signed statement about many servers over a time range (not a page of `servers/` or a
by-product of a `jobs/` run); the Ed25519 key that signs them belongs to the installation, and
verifying a report (`manage.py verify_report`) must work without knowing how it was made.
The daily `ComplianceSnapshot` table lives here too: it feeds the trend charts of the
dashboard, the customer pages and the reports.
"""
