"""Alembic environment for the ledger schema (driven by :mod:`sync.ledger.schema`).

Nothing here is imported at runtime except by Alembic itself; the public API is
:mod:`sync.ledger.schema`. Revision files live in ``versions/`` (not a package).
"""
