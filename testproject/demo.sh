#!/usr/bin/env bash
# The main job: run the test project under gunicorn (gthread: 1 worker,
# 8 threads) on the pooled backend, fire a burst of concurrent requests at it
# (testproject/loadgen.py) and show that every request got a clean session:
# few server connections, many checkouts, one COM_RESET_CONNECTION per reuse,
# and no session state (user variables, sql_mode, time_zone, isolation level,
# TEMPORARY tables, GET_LOCK locks) leaking from one request into another.
#
#   bash testproject/demo.sh            # the pooled backend: must PASS
#   bash testproject/demo.sh --stock    # Django's stock MySQL backend with
#                                       # persistent connections (CONN_MAX_AGE=600):
#                                       # the leak check must fire (expected)
#   bash testproject/demo.sh -- --requests 5000 --concurrency 64   # loadgen options
#
# Self-contained on a fresh clone: sources .ci/bootstrap.sh (virtualenv,
# package, MariaDB), creates the database, migrates, seeds. DATABASE_URL
# (django-environ) overrides the database; logs and reports go to
# testproject/.demo/.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

mode=pooled
loadgen_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --stock) mode=stock ;;
        --pooled) mode=pooled ;;
        -h | --help) usage; exit 0 ;;
        --) shift; loadgen_args=("$@"); break ;;
        *) echo "demo.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../.ci/bootstrap.sh disable=SC1091
source .ci/bootstrap.sh

demo_dir=testproject/.demo
mkdir -p "$demo_dir"
log="$demo_dir/gunicorn-$mode.log"
report="$demo_dir/report-$mode.json"

export DATABASE_URL="${DATABASE_URL:-mysql-pooled://root@127.0.0.1:3306/dmp_testproject?pool=true&pool_max_size=8}"
if [ "$mode" = stock ]; then
    # Same database, Django's stock backend, persistent connections (settings.py).
    export TESTPROJECT_STOCK=1
    export TESTPROJECT_CONN_MAX_AGE="${TESTPROJECT_CONN_MAX_AGE:-600}"
else
    unset TESTPROJECT_STOCK
fi
export PYTHONUNBUFFERED=1
manage() { python testproject/manage.py "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "mode: $mode (DATABASE_URL=$DATABASE_URL${TESTPROJECT_STOCK:+, TESTPROJECT_STOCK=1: stock backend, CONN_MAX_AGE=$TESTPROJECT_CONN_MAX_AGE})"
say "database"
manage createdb
manage migrate --noinput
manage seed_shop

port="$(python - <<'PY'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
)"
url="http://127.0.0.1:$port"

say "gunicorn: gthread, 1 worker x 8 threads on $url (log: $log)"
gunicorn_pid=""
stop_gunicorn() {
    [ -n "$gunicorn_pid" ] || return 0
    if kill -0 "$gunicorn_pid" 2>/dev/null; then
        kill -TERM "$gunicorn_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$gunicorn_pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$gunicorn_pid" 2>/dev/null; then
            echo "demo.sh: gunicorn (pid $gunicorn_pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
            kill -KILL "$gunicorn_pid" 2>/dev/null || true
        fi
    fi
    wait "$gunicorn_pid" 2>/dev/null || true
    gunicorn_pid=""
}
trap stop_gunicorn EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

gunicorn_extra=()
# gunicorn >= 24 opens a control socket at one fixed path per user: not for a
# throwaway server that may run next to others.
if python -m gunicorn --help 2>/dev/null | grep -q -- '--no-control-socket'; then
    gunicorn_extra+=(--no-control-socket)
fi
DJANGO_LOG_LEVEL="${DJANGO_LOG_LEVEL:-INFO}" python -m gunicorn \
    --chdir testproject ${gunicorn_extra[@]+"${gunicorn_extra[@]}"} \
    --worker-class gthread --workers 1 --threads 8 \
    --bind "127.0.0.1:$port" \
    --timeout 60 --graceful-timeout 10 \
    --access-logfile - --error-logfile - --log-level info \
    testproject.wsgi:application >"$log" 2>&1 &
gunicorn_pid=$!
echo "gunicorn master pid $gunicorn_pid"

ready=""
for _ in $(seq 1 150); do
    if ! kill -0 "$gunicorn_pid" 2>/dev/null; then
        echo "demo.sh: gunicorn exited before answering; last lines of $log:" >&2
        tail -n 30 "$log" >&2 || true
        exit 1
    fi
    if python - "$url/pool/" <<'PY' 2>/dev/null; then
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=2) as resp:
    sys.exit(0 if resp.status == 200 else 1)
PY
        ready=1
        break
    fi
    sleep 0.2
done
if [ -z "$ready" ]; then
    echo "demo.sh: gunicorn did not answer $url/pool/ within 30 s; last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
fi

say "load burst (testproject/loadgen.py)"
set +e
python testproject/loadgen.py --url "$url" --report "$report" ${loadgen_args[@]+"${loadgen_args[@]}"}
rc=$?
set -e

stop_gunicorn
server_errors="$(grep -c -E 'Traceback|ERROR' "$log" || true)"

say "result ($mode backend)"
echo "gunicorn log: $log ($server_errors lines with Traceback/ERROR); JSON report: $report"
case "$mode:$rc" in
    pooled:0)
        echo "DEMO PASSED: the pooled backend served the burst and reset every session."
        exit 0 ;;
    stock:2)
        echo "EXPECTED OUTCOME: the leak check fired (loadgen exit status 2). With the stock backend and"
        echo "persistent connections, state one request left on its connection (@leak, sql_mode, time_zone,"
        echo "isolation level, a TEMPORARY TABLE shadowing shop_product, a GET_LOCK) reached later requests."
        echo "Run 'bash testproject/demo.sh' to see the pooled backend reset every session instead."
        exit 0 ;;
esac
case "$rc" in
    1) why="requests failed" ;;
    2) why="session state leaked between requests" ;;
    3) why="inconclusive: no /session/ request ran on a connection that had served /dirty/" ;;
    4) why="setup error" ;;
    *) why="unexpected exit status" ;;
esac
if [ "$mode" = stock ]; then
    echo "DEMO FAILED: the leak check was expected to fire against the stock backend, but loadgen exited $rc ($why)." >&2
else
    echo "DEMO FAILED: loadgen exited $rc ($why)." >&2
fi
if [ "$server_errors" != 0 ]; then
    echo "Server errors from $log:" >&2
    grep -E -A 3 'Traceback|ERROR' "$log" | tail -n 40 >&2 || true
fi
exit 1
