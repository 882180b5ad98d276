"""URLs: the shop's JSON endpoints at the root."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("shop.urls")),
]
