"""Several servers for one alias: ``HOST`` as a list, or ``OPTIONS["pool"]["hosts"]``.

Accepted forms (libpq's rules for a host list, which django-environ's
cluster URLs follow):

* ``HOST: "db1:3306,db2:3306,db3"``: each host may carry its port; a host
  without one gets ``PORT`` (or 3306). An IPv6 address is written in
  brackets: ``"[fd00::1]:3306"``.
* ``HOST: "db1,db2"`` with ``PORT: "3306,3307"``: one port per host, in
  order (what django-environ produces for ``mysql-pooled://u:p@db1:3306,db2:3307/app``).
* ``OPTIONS["pool"]["hosts"]``: a list (or a comma-separated string) of
  ``"host[:port]"`` strings or ``(host, port)`` pairs; ``HOST`` must then
  be empty or one of them.

A Unix socket path cannot be part of a list. Every error raises
:class:`~django.core.exceptions.ImproperlyConfigured` naming the setting,
the value and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_mysql_pooled.pool.hosts import POLICIES

__all__ = ["DEFAULT_PORT", "as_policy", "is_host_list", "label", "parse_hosts", "split_label"]

DEFAULT_PORT = 3306


def as_policy(alias: str, value: object) -> str:
    """``OPTIONS["pool"]["policy"]``: ``"failover"`` or ``"balance"`` (pool/hosts.py).

    :raises ImproperlyConfigured: any other value.
    """
    if not isinstance(value, str) or value.strip().lower() not in POLICIES:
        allowed = " or ".join(repr(policy) for policy in POLICIES)
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool']['policy'] = {value!r} is invalid: it must be {allowed}."
        )
    return value.strip().lower()


def is_host_list(settings_dict: Mapping[str, Any]) -> bool:
    """Whether ``HOST`` or ``PORT`` holds a comma-separated list."""
    return "," in str(settings_dict.get("HOST") or "") or "," in str(settings_dict.get("PORT") or "")


def label(host: str, port: int) -> str:
    """``"host:port"`` (an IPv6 address in brackets; lower case: host names are case-insensitive,
    so ``DB1`` and ``db1`` are one host)."""
    host = host.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_label(text: str) -> tuple[str, int]:
    """The ``(host, port)`` of a :func:`label`."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def parse_hosts(alias: str, settings_dict: Mapping[str, Any], option: object = None) -> tuple[str, ...]:
    """The alias's hosts as ``"host:port"`` labels, in order; ``()`` for one server set the usual way.

    :param settings_dict: the alias's settings (``HOST``, ``PORT``).
    :param option: ``OPTIONS["pool"]["hosts"]`` (``None``: not set).
    :raises ImproperlyConfigured: an empty entry, a bad or out-of-range
        port, a socket path in a list, a host listed twice, ports that do
        not match the hosts, or ``HOST`` and ``hosts`` both set differently.
    """
    host_setting = str(settings_dict.get("HOST") or "").strip()
    port_setting = str(settings_dict.get("PORT") or "").strip()
    if option is not None and option != "" and option != []:
        where = f"DATABASES[{alias!r}]['OPTIONS']['pool']['hosts']"
        if "," in port_setting:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['PORT'] = {port_setting!r} lists ports beside {where}: write each "
                "host's port in the list ('host:port') and leave PORT empty or one port for all."
            )
        default = _port(alias, "PORT", port_setting) if port_setting else DEFAULT_PORT
        labels = _from_option(alias, where, option, default)
        if host_setting and (
            len(_entries(host_setting)) > 1 or label(*_split(alias, "HOST", host_setting, default)) not in labels
        ):
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['HOST'] = {host_setting!r} and {where} are both set: "
                "leave HOST empty when the pool lists its hosts (or list them in HOST alone)."
            )
    elif not is_host_list(settings_dict):
        return ()
    else:
        labels = _from_settings(alias, host_setting, port_setting)
    if len(set(labels)) != len(labels):
        repeated = next(item for item in labels if labels.count(item) > 1)
        raise ImproperlyConfigured(f"DATABASES[{alias!r}]: host {repeated} is listed twice; list each server once.")
    return tuple(labels)


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _from_settings(alias: str, host_setting: str, port_setting: str) -> list[str]:
    hosts = _entries(host_setting)
    ports = _entries(port_setting) if port_setting else []
    if len(ports) > 1 and len(ports) != len(hosts):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['PORT'] = {port_setting!r} lists {len(ports)} ports for {len(hosts)} hosts "
            f"in HOST = {host_setting!r}: give one port per host, one port for all, or write each as host:port."
        )
    if len(ports) > 1:
        if any(":" in host.rsplit("]", 1)[-1] for host in hosts):  # a host:port, or [v6]:port
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]: HOST = {host_setting!r} writes ports and PORT = {port_setting!r} lists them "
                "again; give the ports in one place."
            )
        return [
            label(_split(alias, "HOST", host, DEFAULT_PORT)[0], _port(alias, "PORT", port))
            for host, port in zip(hosts, ports, strict=True)
        ]
    default = _port(alias, "PORT", ports[0]) if ports else DEFAULT_PORT
    return [label(*_split(alias, "HOST", host, default)) for host in hosts]


def _from_option(alias: str, where: str, option: object, default: int) -> list[str]:
    items: Sequence[object]
    if isinstance(option, str):
        items = _entries(option)
    elif isinstance(option, list | tuple):
        items = option
    else:
        raise ImproperlyConfigured(
            f"{where} = {option!r} is invalid: use a list of 'host:port' strings, e.g. ['db1:3306', 'db2:3306']."
        )
    labels = []
    for item in items:
        if isinstance(item, str):
            labels.append(label(*_split(alias, where, item.strip(), default)))
        elif isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str) and item[0].strip():
            host = item[0].strip()
            host = host if host.startswith("[") else f"[{host}]" if ":" in host else host
            labels.append(label(_split(alias, where, host, default)[0], _port(alias, where, item[1])))
        else:
            raise ImproperlyConfigured(
                f"{where} has entry {item!r}: each entry must be 'host', 'host:port' or a (host, port) pair."
            )
    return labels


def _split(alias: str, where: str, text: str, default: int) -> tuple[str, int]:
    """``"host[:port]"`` (IPv6 in brackets) -> ``(host, port)``."""
    setting = where if where.startswith("DATABASES") else f"DATABASES[{alias!r}][{where!r}]"
    if not text:
        raise ImproperlyConfigured(f"{setting} has an empty host in its list; remove the extra comma.")
    if text.startswith("/"):
        raise ImproperlyConfigured(
            f"{setting} lists the socket path {text!r}: a list of hosts takes TCP hosts only; "
            "set HOST to the socket path alone for one local server."
        )
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            raise ImproperlyConfigured(f"{setting} has {text!r}: write an IPv6 address as [address]:port.")
        host, port = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ImproperlyConfigured(f"{setting} has {text!r}: write an IPv6 address in brackets, [address]:port.")
    else:
        host, port = text, ""
    if not host:
        raise ImproperlyConfigured(f"{setting} has {text!r}, a port without a host.")
    if host.lower() == "localhost":
        raise ImproperlyConfigured(
            f"{setting} lists {text!r}: the MySQL client library connects to 'localhost' through the Unix "
            "socket, whatever the port; write 127.0.0.1 (or ::1 in brackets) for TCP to this machine."
        )
    return host, _port(alias, setting, port) if port else default


def _port(alias: str, where: str, value: object) -> int:
    setting = where if where.startswith("DATABASES") else f"DATABASES[{alias!r}][{where!r}]"
    try:
        port = int(str(value).strip())
    except ValueError:
        port = 0
    if not 0 < port < 65536 or isinstance(value, bool):
        raise ImproperlyConfigured(f"{setting} has port {value!r}: a port is an integer from 1 to 65535.")
    return port
