"""Sphinx configuration for django-mysql-pooled.

Built in CI with ``python -m sphinx -W --keep-going -q -b html docs docs/_build/html``:
every warning fails the build. Sphinx built-ins plus the Furo theme and
myst-parser (the ``docs`` extra; myst-parser only to include CHANGELOG.md in
changelog.rst); diagrams are drawn from their Graphviz sources by ``dot``
(Debian package ``graphviz``) at build time. No network: no intersphinx.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

# The version lives in one place: the package's __version__ (pyproject reads it too).
from django_mysql_pooled import __version__  # noqa: E402

project = "django-mysql-pooled"
author = "django-mysql-pooled developers"
copyright = "django-mysql-pooled developers"  # noqa: A001 - Sphinx's name
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.graphviz", "myst_parser", "statstable"]

# The modules documented with autodoc import Django and MySQLdb but read no
# settings at import time, so no DJANGO_SETTINGS_MODULE and no django.setup().
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"

exclude_patterns = ["_build"]
default_role = "code"
highlight_language = "python3"

# Diagrams: SVG, so they stay sharp and their text can be searched and copied.
graphviz_output_format = "svg"
graphviz_dot_args = [
    "-Gfontname=Helvetica",
    "-Nfontname=Helvetica",
    "-Efontname=Helvetica",
    "-Gbgcolor=transparent",
]

html_theme = "furo"
html_title = f"django-mysql-pooled {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
