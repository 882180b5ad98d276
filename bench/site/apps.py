"""The benchmark app: counts every new server connection this process opens."""

from __future__ import annotations

from django.apps import AppConfig


class BenchSiteConfig(AppConfig):
    name = "bench.site"
    label = "benchsite"

    def ready(self) -> None:
        from bench.site.counter import install

        install()
