"""Sphinx configuration for django-mysql-pooled.

Built in CI with ``python -m sphinx -W --keep-going -q -b html docs docs/_build/html``:
every warning fails the build. Only Sphinx built-ins are used (no network:
no intersphinx).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

project = "django-mysql-pooled"
author = "django-mysql-pooled developers"
copyright = "django-mysql-pooled developers"  # noqa: A001 - Sphinx's name
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "statstable"]

# The modules documented with autodoc import Django and MySQLdb but read no
# settings at import time, so no DJANGO_SETTINGS_MODULE and no django.setup().
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"

exclude_patterns = ["_build"]
default_role = "code"
highlight_language = "python3"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = "django-mysql-pooled"
html_theme_options = {
    "description": "A pooled MySQL/MariaDB backend for Django",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
html_static_path: list[str] = []
