#!/usr/bin/env bash
# The test suite, self-contained: creates .venv, installs the project with its
# test extras, finds or starts a MySQL/MariaDB server, runs pytest with the
# branch-coverage gate. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/bootstrap.sh
python -m coverage erase
python -m pytest --cov --cov-branch --cov-report=term-missing "$@"
