"""Fault injection against a private MariaDB server and a loopback proxy (see conftest.py)."""
