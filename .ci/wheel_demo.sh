#!/usr/bin/env bash
# The release check: build the sdist and the wheel (python -m build), check
# them (twine check --strict, and what each must carry), install the wheel
# into a clean virtualenv and run the demo (testproject/demo.sh) against that
# installed wheel, not against the source tree.
#
#   bash .ci/wheel_demo.sh          # artifacts in dist/; build log, demo logs and report in build/wheel-demo/
#
# The demo runs from a copy of testproject/ outside the repository, with a
# bootstrap that only activates the clean virtualenv, so nothing can import
# django_mysql_pooled from the source tree. Its database is dmp_wheel_demo
# (DATABASE_URL overrides), so it never shares one with testproject/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
# The build tools (the release extra) and a reachable MySQL/MariaDB server.
# shellcheck source=bootstrap.sh disable=SC1091
source .ci/bootstrap.sh

say() { printf '\n== %s\n' "$*"; }
fail() { echo "wheel_demo.sh: $*" >&2; exit 1; }

version="$(python -c 'import ast, pathlib
tree = ast.parse(pathlib.Path("django_mysql_pooled/__init__.py").read_text())
print(next(n.value.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__version__"))')"
say "build django-mysql-pooled $version (sdist, then the wheel from the sdist)"
rm -rf dist build/wheel-demo
mkdir -p build/wheel-demo
python -m build --outdir dist . >build/wheel-demo/build.log 2>&1 || { tail -n 40 build/wheel-demo/build.log >&2; fail "python -m build failed"; }
sdist="dist/django_mysql_pooled-$version.tar.gz"
wheel="dist/django_mysql_pooled-$version-py3-none-any.whl"
[ -f "$sdist" ] || fail "no $sdist (dist/ has: $(ls dist))"
[ -f "$wheel" ] || fail "no $wheel (dist/ has: $(ls dist))"
ls -l dist/

say "twine check --strict"
python -m twine check --strict dist/*

say "contents"
python - "$sdist" "$wheel" "$version" <<'PY'
import sys
import tarfile
import zipfile
from email.parser import Parser

sdist, wheel, version = sys.argv[1:]
prefix = f"django_mysql_pooled-{version}/"
sdist_names = {name.removeprefix(prefix) for name in tarfile.open(sdist).getnames()}
wheel_names = set(zipfile.ZipFile(wheel).namelist())
problems = []
for name in ["CHANGELOG.md", "LICENSE", "README.md", "pyproject.toml", "MANIFEST.in", "noxfile.py",
             "django_mysql_pooled/py.typed", "tests/conftest.py", "tests/settings.py", "docs/conf.py",
             "docs/index.rst", "docs/diagrams/lifecycle.dot", "testproject/manage.py", "bench/results.png"]:
    if name not in sdist_names:
        problems.append(f"sdist lacks {name}")
for name in ["django_mysql_pooled/__init__.py", "django_mysql_pooled/base.py", "django_mysql_pooled/py.typed",
             f"django_mysql_pooled-{version}.dist-info/licenses/LICENSE"]:
    if name not in wheel_names:
        problems.append(f"wheel lacks {name}")
strays = sorted(n for n in wheel_names if not n.startswith(("django_mysql_pooled/", "django_mysql_pooled-")))
if strays:
    problems.append(f"wheel carries files outside the package: {strays[:5]}")
junk = sorted(n for n in sdist_names | wheel_names if "__pycache__" in n or n.endswith(".pyc") or "/.demo/" in n)
if junk:
    problems.append(f"build junk in the artifacts: {junk[:5]}")
meta = Parser().parsestr(zipfile.ZipFile(wheel).read(f"django_mysql_pooled-{version}.dist-info/METADATA").decode())
if meta["Version"] != version:
    problems.append(f"wheel metadata version {meta['Version']!r} != {version!r}")
urls = meta.get_all("Project-URL") or []
if not urls:
    problems.append("no Project-URL in the wheel metadata")
print(f"sdist: {len(sdist_names)} entries; wheel: {len(wheel_names)} entries; Requires-Python {meta['Requires-Python']}")
print("classifiers:", ", ".join(c for c in meta.get_all("Classifier") or [] if "Django ::" in c or "Python :: 3." in c))
print("project URLs:", "; ".join(urls))
if problems:
    sys.exit("\n".join(problems))
PY

say "clean virtualenv with the wheel"
work="$(mktemp -d "${TMPDIR:-/tmp}/dmp-wheel-demo.XXXXXX")"
# Keep the demo's logs and report (build/wheel-demo/demo/), then remove the venv.
trap 'cp -r "$work/demo/testproject/.demo" build/wheel-demo/demo 2>/dev/null || true; rm -rf "$work"' EXIT
python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
# The wheel and its dependencies, plus the servers the demo runs it under.
"$work/venv/bin/python" -m pip install -q "$wheel" gunicorn uvicorn

# The demo, laid out as in the repository but without the package sources:
# testproject/ and a .ci/bootstrap.sh that only activates the clean venv.
mkdir -p "$work/demo/.ci"
cp -r testproject "$work/demo/testproject"
rm -rf "$work/demo/testproject/.demo"
find "$work/demo" -name __pycache__ -prune -exec rm -rf {} +
cat >"$work/demo/.ci/bootstrap.sh" <<EOF
# Written by .ci/wheel_demo.sh: the demo runs in the clean venv with the wheel.
source "$work/venv/bin/activate"
EOF
[ ! -e "$work/demo/django_mysql_pooled" ] || fail "the demo copy holds the package sources"

# The repository's .venv off PATH, no PYTHONPATH: only the clean venv is seen.
clean_path="$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -x -F "$root/.venv/bin" | paste -sd: -)"
installed="$(cd "$work/demo" && env -u VIRTUAL_ENV -u PYTHONPATH PATH="$work/venv/bin:$clean_path" \
    python -c 'import django_mysql_pooled as m; print(m.__version__, m.__file__)')"
echo "imported from the demo directory: django_mysql_pooled $installed"
case "$installed" in
    "$version $work/venv/lib/"*/site-packages/django_mysql_pooled/__init__.py) ;;
    *) fail "django_mysql_pooled does not come from the clean venv's site-packages: $installed" ;;
esac

say "demo against the installed wheel (testproject/demo.sh)"
export DATABASE_URL="${DATABASE_URL:-mysql-pooled://root@127.0.0.1:3306/dmp_wheel_demo?pool=true&pool_max_size=8}"
env -u VIRTUAL_ENV -u PYTHONPATH PATH="$work/venv/bin:$clean_path" bash "$work/demo/testproject/demo.sh"
