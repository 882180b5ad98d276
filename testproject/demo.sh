#!/usr/bin/env bash
# The main job: run the test project under gunicorn (gthread: 1 worker,
# 8 threads) on the pooled backend, fire a burst of concurrent requests at it
# (testproject/loadgen.py) and show that every request got a clean session:
# few server connections, many checkouts, one COM_RESET_CONNECTION per reuse,
# and no session state (user variables, sql_mode, time_zone, isolation level,
# TEMPORARY tables, GET_LOCK locks) leaking from one request into another.
# Then it shows slow queries killed on the server (testproject/cancel_demo.py):
# GET /search/ with cancellable(timeout=0.5) under gunicorn, and, when uvicorn
# is installed, an async view (/slow-count/) under uvicorn whose client goes
# away after 0.5 s; both checked in the server's PROCESSLIST.
#
#   bash testproject/demo.sh            # the pooled backend: must PASS
#   bash testproject/demo.sh --stock    # Django's stock MySQL backend with
#                                       # persistent connections (CONN_MAX_AGE=600):
#                                       # the leak check must fire (expected)
#   bash testproject/demo.sh -- --requests 5000 --concurrency 64   # loadgen options
#
# Self-contained on a fresh clone: sources .ci/bootstrap.sh (virtualenv,
# package, MariaDB), creates the database, migrates, seeds (262,144 reviews
# for the cancellation steps, once). DATABASE_URL (django-environ) overrides
# the database; logs and reports go to testproject/.demo/.
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

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
asgi_log="$demo_dir/uvicorn-$mode.log"
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
manage seed_reviews

free_port() {
    python - <<'PY'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}
port="$(free_port)"
url="http://127.0.0.1:$port"

# The servers this script started, stopped by PID on every exit.
gunicorn_pid=""
uvicorn_pid=""
# stop_server NAME PID: SIGTERM, SIGKILL after 10 s, then reap it.
stop_server() {
    local name=$1 pid=$2
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo.sh: $name (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
stop_gunicorn() {
    stop_server gunicorn "$gunicorn_pid"
    gunicorn_pid=""
}
stop_uvicorn() {
    stop_server uvicorn "$uvicorn_pid"
    uvicorn_pid=""
}
trap 'stop_uvicorn; stop_gunicorn' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_ready NAME PID URL LOG: until URL/pool/ answers 200 (30 s); 1 if it does not.
wait_ready() {
    local name=$1 pid=$2 base=$3 server_log=$4
    for _ in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo.sh: $name exited before answering; last lines of $server_log:" >&2
            tail -n 30 "$server_log" >&2 || true
            return 1
        fi
        if python - "$base/pool/" <<'PY' 2>/dev/null; then
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=2) as resp:
    sys.exit(0 if resp.status == 200 else 1)
PY
            return 0
        fi
        sleep 0.2
    done
    echo "demo.sh: $name did not answer $base/pool/ within 30 s; last lines of $server_log:" >&2
    tail -n 30 "$server_log" >&2 || true
    return 1
}

say "gunicorn: gthread, 1 worker x 8 threads on $url (log: $log)"

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
wait_ready gunicorn "$gunicorn_pid" "$url" "$log" || exit 1

say "load burst (testproject/loadgen.py)"
set +e
python testproject/loadgen.py --url "$url" --report "$report" ${loadgen_args[@]+"${loadgen_args[@]}"}
rc=$?
set -e

# cancel_demo.py: 0 killed on the server, 1 still running, 3 inconclusive, 4 setup error.
say "query cancellation (sync view, gunicorn): GET /search/ with cancellable(timeout=0.5)"
set +e
python testproject/cancel_demo.py search --url "$url" --timeout 0.5
search_rc=$?
set -e

stop_gunicorn
# The 503 of the cancelled /search/ is logged by django.request at ERROR: expected, not counted.
expected_503='Service Unavailable: /search/'
server_errors="$( (grep -E 'Traceback|ERROR' "$log" || true) | grep -v -c "$expected_503" || true)"

say "query cancellation (async view, uvicorn): the client of GET /slow-count/ goes away after 0.5 s"
disconnect_rc=""
control_rc=""
asgi_errors=""
if python -c 'import uvicorn' 2>/dev/null; then
    asgi_port="$(free_port)"
    asgi_url="http://127.0.0.1:$asgi_port"
    echo "uvicorn (ASGI: testproject.asgi) on $asgi_url (log: $asgi_log)"
    python -m uvicorn --app-dir testproject --host 127.0.0.1 --port "$asgi_port" \
        --lifespan off --timeout-graceful-shutdown 5 \
        testproject.asgi:application >"$asgi_log" 2>&1 &
    uvicorn_pid=$!
    echo "uvicorn pid $uvicorn_pid"
    if wait_ready uvicorn "$uvicorn_pid" "$asgi_url" "$asgi_log"; then
        set +e
        python testproject/cancel_demo.py disconnect --url "$asgi_url" --after 0.5
        disconnect_rc=$?
        echo
        echo "control: the same request with /slow-count/?cancellable=0 (no cancellable())"
        python testproject/cancel_demo.py disconnect --url "$asgi_url" --after 0.5 --control
        control_rc=$?
        set -e
    else
        disconnect_rc=4
    fi
    stop_uvicorn
    asgi_errors="$(grep -c -E 'Traceback|ERROR' "$asgi_log" || true)"
else
    echo "SKIPPED: uvicorn is not installed in this environment (pip install uvicorn)."
fi

say "result ($mode backend)"
echo "gunicorn log: $log ($server_errors lines with Traceback/ERROR); JSON report: $report"
[ -z "$asgi_errors" ] || echo "uvicorn log: $asgi_log ($asgi_errors lines with Traceback/ERROR)"
cancel_why() {
    case "$1" in
        1) echo "the query kept running on the server" ;;
        3) echo "inconclusive: no query was seen killed" ;;
        4) echo "setup error" ;;
        *) echo "unexpected exit status $1" ;;
    esac
}
cancel_failures=()
if [ "$search_rc" = 0 ]; then
    echo "cancellation: /search/ timeout: killed on the server (PROCESSLIST checked)"
else
    cancel_failures+=("/search/ timeout: $(cancel_why "$search_rc")")
fi
if [ -z "$disconnect_rc" ]; then
    echo "cancellation: /slow-count/ disconnect: skipped (no uvicorn)"
elif [ "$disconnect_rc" = 0 ]; then
    echo "cancellation: /slow-count/ disconnect: killed on the server (PROCESSLIST checked)"
else
    cancel_failures+=("/slow-count/ disconnect: $(cancel_why "$disconnect_rc")")
fi
if [ -n "$control_rc" ] && [ "$control_rc" != 0 ]; then
    echo "note: the control request (no cancellable()) did not keep running as expected (exit status $control_rc)"
fi
if [ ${#cancel_failures[@]} -eq 0 ]; then
    case "$mode:$rc" in
        pooled:0)
            echo "DEMO PASSED: the pooled backend served the burst and reset every session."
            echo "Slow queries were killed on the server: on timeout${disconnect_rc:+ and when the client went away}."
            exit 0 ;;
        stock:2)
            echo "EXPECTED OUTCOME: the leak check fired (loadgen exit status 2). With the stock backend and"
            echo "persistent connections, state one request left on its connection (@leak, sql_mode, time_zone,"
            echo "isolation level, a TEMPORARY TABLE shadowing shop_product, a GET_LOCK) reached later requests."
            echo "Run 'bash testproject/demo.sh' to see the pooled backend reset every session instead."
            exit 0 ;;
    esac
else
    for failure in "${cancel_failures[@]}"; do
        echo "DEMO FAILED: query cancellation: $failure." >&2
    done
    case "$mode:$rc" in
        pooled:0 | stock:2) exit 1 ;;
    esac
fi
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
