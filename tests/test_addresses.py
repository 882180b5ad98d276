"""Several hosts in the settings: every accepted form, every mistake's message, and the pool options that go with them.

Forms: ``HOST`` as a list (ports inline, a ``PORT`` list, or one ``PORT``
for all), ``OPTIONS["pool"]["hosts"]`` (list, pairs, comma string) and
django-environ's ``mysql-pooled://`` cluster URL. Hypothesis renders random
host lists in each form and parses them back.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

import django_mysql_pooled.environ  # noqa: F401 - registers mysql-pooled://
from django_mysql_pooled.addresses import label, parse_hosts, split_label
from django_mysql_pooled.config import PoolConfig, parse_pool_config


def hosts_of(host: Any = "", port: Any = "", option: Any = None) -> tuple[str, ...]:
    return parse_hosts("app", {"HOST": host, "PORT": port}, option)


def config(pool: Any, **settings: Any) -> PoolConfig:
    parsed = parse_pool_config("app", {"OPTIONS": {"pool": pool}, "CONN_MAX_AGE": 0, **settings})
    assert parsed is not None
    return parsed


# -- accepted forms -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("db1:3306,db2:3307", "", ("db1:3306", "db2:3307")),
        (" db1:3306 , db2:3307 ", "", ("db1:3306", "db2:3307")),
        ("db1,db2", "", ("db1:3306", "db2:3306")),
        ("db1,db2", "3307", ("db1:3307", "db2:3307")),
        ("db1,db2", 3307, ("db1:3307", "db2:3307")),
        ("db1:1,db2", "5", ("db1:1", "db2:5")),  # libpq: a host without its port gets PORT
        ("db1,db2", "1,2", ("db1:1", "db2:2")),
        ("db1,db2", " 1 , 2 ", ("db1:1", "db2:2")),
        ("[::1]:3306,[fd00::2]", "", ("[::1]:3306", "[fd00::2]:3306")),
        ("[::1],[fd00::2]", "3306,3307", ("[::1]:3306", "[fd00::2]:3307")),
        ("10.0.0.1:3306,10.0.0.2:3306", None, ("10.0.0.1:3306", "10.0.0.2:3306")),
        ("db1", "3306", ()),  # one server: not a list
        ("", "", ()),
        (None, None, ()),
    ],
)
def test_host_and_port_settings(host: Any, port: Any, expected: tuple[str, ...]) -> None:
    assert hosts_of(host, port) == expected


@pytest.mark.parametrize(
    ("option", "host", "port", "expected"),
    [
        (["db1:3306", "db2"], "", "", ("db1:3306", "db2:3306")),
        (("db1", "db2"), "", "3307", ("db1:3307", "db2:3307")),
        ([("db1", 3306), ("db2", "3307")], "", "", ("db1:3306", "db2:3307")),
        ((["db1", 1], ["db2", 2]), "", "", ("db1:1", "db2:2")),
        ([("::1", 3306), ("[fd00::2]", 3306)], "", "", ("[::1]:3306", "[fd00::2]:3306")),
        ([(" db1 ", 1), (" [fd00::2] ", 2)], "", "", ("db1:1", "[fd00::2]:2")),  # entries are stripped
        ([" db1:3306 ", " db2"], "", "", ("db1:3306", "db2:3306")),
        ("db1:1, db2:2", "", "", ("db1:1", "db2:2")),
        (["db1:1", "db2:2"], "db1", "1", ("db1:1", "db2:2")),  # HOST may name one of them
        (["db1:3306"], "", "", ("db1:3306",)),  # one server, listed
        ([], "db1", "", ()),  # empty: not set
        ("", "db1", "", ()),
    ],
)
def test_the_hosts_option(option: Any, host: str, port: str, expected: tuple[str, ...]) -> None:
    assert hosts_of(host, port, option) == expected


def test_labels_split_back_into_host_and_port() -> None:
    assert label("db1", 3306) == "db1:3306"
    assert label("fd00::2", 1) == "[fd00::2]:1"
    assert split_label("[fd00::2]:1") == ("fd00::2", 1)
    assert split_label("db1:3306") == ("db1", 3306)


# -- mistakes ---------------------------------------------------------------------------

HOST = "DATABASES['app']['HOST']"
PORT = "DATABASES['app']['PORT']"
OPTION = "DATABASES['app']['OPTIONS']['pool']['hosts']"


@pytest.mark.parametrize(
    ("host", "port", "option", "message"),
    [
        ("db1,,db2", "", None, f"{HOST} has an empty host in its list; remove the extra comma."),
        ("db1,", "", None, f"{HOST} has an empty host in its list; remove the extra comma."),
        (
            "/run/mysqld/mysqld.sock,db2",
            "",
            None,
            f"{HOST} lists the socket path '/run/mysqld/mysqld.sock': a list of hosts takes TCP hosts only; "
            "set HOST to the socket path alone for one local server.",
        ),
        ("db1:abc,db2", "", None, f"{HOST} has port 'abc': a port is an integer from 1 to 65535."),
        ("db1:0,db2", "", None, f"{HOST} has port '0': a port is an integer from 1 to 65535."),
        ("db1:65536,db2", "", None, f"{HOST} has port '65536': a port is an integer from 1 to 65535."),
        ("db1,db2", "x", None, f"{PORT} has port 'x': a port is an integer from 1 to 65535."),
        ("db1,db2", "1,-2", None, f"{PORT} has port '-2': a port is an integer from 1 to 65535."),
        (
            "db1,db2,db3",
            "1,2",
            None,
            f"{PORT} = '1,2' lists 2 ports for 3 hosts in HOST = 'db1,db2,db3': give one port per host, "
            "one port for all, or write each as host:port.",
        ),
        ("::1,db2", "", None, f"{HOST} has '::1': write an IPv6 address in brackets, [address]:port."),
        ("[::1,db2", "", None, f"{HOST} has '[::1': write an IPv6 address as [address]:port."),
        ("[::1]x,db2", "", None, f"{HOST} has '[::1]x': write an IPv6 address as [address]:port."),
        (":3306,db2", "", None, f"{HOST} has ':3306', a port without a host."),
        ("db1:1,db1:1", "", None, "DATABASES['app']: host db1:1 is listed twice; list each server once."),
        (
            "localhost:3307,db2",
            "",
            None,
            f"{HOST} lists 'localhost:3307': the MySQL client library connects to 'localhost' through the Unix "
            "socket, whatever the port; write 127.0.0.1 (or ::1 in brackets) for TCP to this machine.",
        ),
        ("", "", ["db1", "LocalHost"], f"{OPTION} lists 'LocalHost': the MySQL client library connects"),
        ("", "", [("localhost", 3307), ("db2", 1)], f"{OPTION} lists 'localhost': the MySQL client library connects"),
        (
            "",
            "",
            [("/run/mysqld/mysqld.sock", 3306), ("db2", 1)],
            f"{OPTION} lists the socket path '/run/mysqld/mysqld.sock': a list of hosts takes TCP hosts only",
        ),
        ("", "", [(" ", 1), ("db2", 2)], f"{OPTION} has entry (' ', 1): each entry must be"),
        (
            "",
            "1,2",
            ["db1", "db2"],
            f"{PORT} = '1,2' lists ports beside {OPTION}: write each host's port in the list ('host:port') "
            "and leave PORT empty or one port for all.",
        ),
        (
            "db1:1,db2",
            "1,2",
            None,
            "DATABASES['app']: HOST = 'db1:1,db2' writes ports and PORT = '1,2' lists them again; "
            "give the ports in one place.",
        ),
        ("[::1]:1,db2", "1,2", None, "DATABASES['app']: HOST = '[::1]:1,db2' writes ports and PORT"),
        ("db1,db1:3306", "", None, "DATABASES['app']: host db1:3306 is listed twice; list each server once."),
        (
            "",
            "",
            7,
            f"{OPTION} = 7 is invalid: use a list of 'host:port' strings, e.g. ['db1:3306', 'db2:3306'].",
        ),
        ("", "", {"db1": 1}, f"{OPTION} = {{'db1': 1}} is invalid: use a list of 'host:port' strings"),
        (
            "",
            "",
            [("db1",)],
            f"{OPTION} has entry ('db1',): each entry must be 'host', 'host:port' or a (host, port) pair.",
        ),
        ("", "", [(1, 2)], f"{OPTION} has entry (1, 2): each entry must be"),
        ("", "", [("", 2)], f"{OPTION} has entry ('', 2): each entry must be"),
        ("", "", [None], f"{OPTION} has entry None: each entry must be"),
        ("", "", [("db1", "x")], f"{OPTION} has port 'x': a port is an integer from 1 to 65535."),
        ("", "", [("db1", True)], f"{OPTION} has port True: a port is an integer from 1 to 65535."),
        ("", "", ["db1:1", ""], f"{OPTION} has an empty host in its list; remove the extra comma."),
        (
            "db3",
            "",
            ["db1", "db2"],
            f"{HOST} = 'db3' and {OPTION} are both set: leave HOST empty when the pool lists its hosts "
            "(or list them in HOST alone).",
        ),
        ("db1,db2", "", ["db1", "db2"], f"{HOST} = 'db1,db2' and {OPTION} are both set"),
    ],
)
def test_each_mistake_names_the_setting_the_value_and_the_fix(host: str, port: str, option: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        hosts_of(host, port, option)
    assert str(raised.value).startswith(message)


# -- django-environ URLs ------------------------------------------------------------------


def from_url(url: str) -> dict[str, Any]:
    settings: dict[str, Any] = environ.Env.db_url_config(url)
    settings.setdefault("CONN_MAX_AGE", 0)
    return settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql-pooled://u:p@h1:1,h2:2/db?pool=true", ("h1:1", "h2:2")),
        ("mysql-pooled://u:p@h1,h2/db?pool=true", ("h1:3306", "h2:3306")),
        ("mysql-pooled://u:p@[::1]:3306,[fd00::2]:3307/db?pool=true", ("[::1]:3306", "[fd00::2]:3307")),
        ("mysql-pooled://u:p%2Cq@h1:1,h2:2/db?pool=true", ("h1:1", "h2:2")),  # a comma in the password
    ],
)
def test_urls_may_list_hosts(url: str, expected: tuple[str, ...]) -> None:
    settings = from_url(url)
    assert parse_pool_config("app", settings) == PoolConfig(hosts=expected)
    assert settings["NAME"] == "db" and settings["USER"] == "u"


def test_a_url_sets_the_host_options_as_strings() -> None:
    url = (
        "mysql-pooled://u:p@h1:1,h2:2/db?pool_policy=balance&pool_require_primary=true"
        "&pool_require_synced=1&pool_host_backoff=0.5&pool_host_backoff_max=8"
    )
    parsed = parse_pool_config("app", from_url(url))
    assert parsed == PoolConfig(
        hosts=("h1:1", "h2:2"),
        policy="balance",
        require_primary=True,
        require_synced=True,
        host_backoff=0.5,
        host_backoff_max=8.0,
    )


def test_a_url_with_one_host_is_one_server() -> None:
    settings = from_url("mysql-pooled://u:p@db1:3306/db?pool=true")
    assert (settings["HOST"], settings["PORT"]) == ("db1", 3306)
    assert parse_pool_config("app", settings) == PoolConfig()


# -- generated host lists: parse(render(x)) == x -------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(lambda address: ipaddress.IPv6Address(address).compressed)


def _label_of(server: tuple[str, int]) -> str:
    return label(*server)


_servers = st.lists(
    st.tuples(st.one_of(_names, _ipv4, _ipv6), st.integers(1, 65535)), min_size=2, max_size=5, unique_by=_label_of
)


def _inline(host: str, port: int) -> str:
    return label(host, port)


def _bare(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@given(servers=_servers, form=st.sampled_from(["inline", "port list", "option", "pairs", "comma string", "url"]))
def test_a_rendered_host_list_parses_back(servers: list[tuple[str, int]], form: str) -> None:
    expected = tuple(label(host, port) for host, port in servers)
    if form == "inline":
        parsed = hosts_of(",".join(_inline(*server) for server in servers))
    elif form == "port list":
        parsed = hosts_of(",".join(_bare(host) for host, _ in servers), ",".join(str(port) for _, port in servers))
    elif form == "option":
        parsed = hosts_of(option=[_inline(*server) for server in servers])
    elif form == "pairs":
        parsed = hosts_of(option=[tuple(server) for server in servers])
    elif form == "comma string":
        parsed = hosts_of(option=", ".join(_inline(*server) for server in servers))
    else:
        netloc = ",".join(_inline(*server) for server in servers)
        parsed = config(True, **server_settings(from_url(f"mysql-pooled://u:p@{netloc}/db"))).hosts
    assert parsed == expected


@given(hosts=st.lists(_names, min_size=2, max_size=4, unique=True), port=st.integers(1, 65535))
def test_one_port_applies_to_every_host(hosts: list[str], port: int) -> None:
    assert hosts_of(",".join(hosts), str(port)) == tuple(label(host, port) for host in hosts)
    netloc = ",".join(hosts) + f":{port}"  # what django-environ makes of the last host's port: PORT for all
    assert config(True, **server_settings(from_url(f"mysql-pooled://u:p@{netloc}/db"))).hosts == tuple(
        label(host, port) for host in hosts
    )


def server_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {"HOST": settings["HOST"], "PORT": settings["PORT"]}


def test_host_names_are_case_insensitive() -> None:
    assert parse_hosts("default", {"HOST": "DB1:3306,db2", "PORT": ""}) == ("db1:3306", "db2:3306")
    with pytest.raises(ImproperlyConfigured, match="db1:3306 is listed twice"):
        parse_hosts("default", {"HOST": "DB1:3306,db1:3306", "PORT": ""})
