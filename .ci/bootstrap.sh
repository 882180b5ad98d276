# Sourced by tests/run.sh, testproject/demo.sh, .ci/run and .ci/wheel_demo.sh:
# installs what the project needs (system packages when root, the virtualenv,
# the package and its extras, nox for the version matrix) and makes sure a
# MySQL/MariaDB server is reachable.
set -euo pipefail

_need_apt=()
command -v pkg-config >/dev/null 2>&1 || _need_apt+=(pkg-config)
[ -e /usr/include/mariadb/mysql.h ] || [ -e /usr/include/mysql/mysql.h ] || _need_apt+=(libmariadb-dev)
command -v gcc >/dev/null 2>&1 || _need_apt+=(gcc)
command -v wrk >/dev/null 2>&1 || _need_apt+=(wrk)
command -v valgrind >/dev/null 2>&1 || _need_apt+=(valgrind)  # bench: instruction counts (issue 10)
# Only the docs build needs Graphviz (dot draws the diagrams of docs/diagrams/).
_want_apt=()
command -v dot >/dev/null 2>&1 || _want_apt+=(graphviz)
# The cluster tests (tests/clusters) start a private Galera cluster: the galera-4 provider, and
# mariadb-backup (with socat) for its state transfers. Without them those tests skip.
_want_cluster=()
[ -e /usr/lib/galera/libgalera_smm.so ] || _want_cluster+=(galera-4)
command -v mariadb-backup >/dev/null 2>&1 || command -v mariabackup >/dev/null 2>&1 || _want_cluster+=(mariadb-backup)
command -v socat >/dev/null 2>&1 || _want_cluster+=(socat)
if [ ${#_need_apt[@]} -gt 0 ] || [ ${#_want_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing system packages: ${_need_apt[*]} ${_want_apt[*]}" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            ${_need_apt[@]+"${_need_apt[@]}"} ${_want_apt[@]+"${_want_apt[@]}"} >/dev/null
    elif [ ${#_need_apt[@]} -gt 0 ]; then
        echo "Missing system packages: ${_need_apt[*]} (needed to build mysqlclient)." >&2
        exit 1
    else
        echo "Note: ${_want_apt[*]} is not installed: the docs build (Graphviz diagrams) will fail." >&2
    fi
fi
if [ ${#_want_cluster[@]} -gt 0 ]; then
    _cluster_note="Note: ${_want_cluster[*]} not installed: the Galera cluster tests (tests/clusters) will skip."
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "Installing system packages for the cluster tests: ${_want_cluster[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_want_cluster[@]}" >/dev/null; } \
            || echo "$_cluster_note (apt-get install failed)" >&2
    else
        echo "$_cluster_note" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
_stamp=.venv/.dmp-installed
if [ ! -f "$_stamp" ] || [ pyproject.toml -nt "$_stamp" ]; then
    python -m pip install -q --upgrade pip
    python -m pip install -q -e ".[test,docs,dev,bench,release]"
    touch "$_stamp"
fi

# DESIGN section 9: DATABASE_URL, else 127.0.0.1:3306 (started here if this
# machine has mariadbd), else testcontainers (tests/server.py).
_port_open() { python - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}
if [ -z "${DATABASE_URL:-}" ] && ! _port_open; then
    if [ -x /usr/sbin/mariadbd ] && [ "$(id -u)" = 0 ]; then
        echo "Starting MariaDB (/usr/sbin/mariadbd)..." >&2
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        for _ in $(seq 1 60); do _port_open && break; sleep 0.5; done
    fi
fi
