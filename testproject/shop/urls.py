"""The shop's endpoints (see :mod:`shop.views`)."""

from __future__ import annotations

from django.urls import URLPattern, path

from shop import views

urlpatterns: list[URLPattern] = [
    path("products/", views.product_list, name="product-list"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("orders/", views.create_order, name="order-create"),
    path("dirty/", views.dirty, name="dirty"),
    path("session/", views.session, name="session"),
    path("pool/", views.pool_stats, name="pool"),
    path("search/", views.search, name="search"),
    path("slow-count/", views.slow_count, name="slow-count"),
]
