"""ASGI entry point (``uvicorn testproject.asgi:application``)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

application: ASGIHandler = get_asgi_application()
