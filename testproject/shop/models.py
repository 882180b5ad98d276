"""Products, the orders that draw down their stock, and reviews (the cancellation demo's big table)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models

from django_mysql_pooled.cancel.queryset import CancellableQuerySet


class Product(models.Model):
    # Declared so that type checkers know it whichever settings the
    # django-stubs plugin loads (the repository's mypy config uses tests.settings).
    objects: ClassVar[models.Manager[Product]] = models.Manager()

    name = models.CharField(max_length=100, unique=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    objects: ClassVar[models.Manager[Order]] = models.Manager()

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.quantity} items, {self.total})"


class Review(models.Model):
    """A product review: the table the cancellation demo searches.

    ``manage.py seed_reviews`` fills it with a few hundred thousand rows, so a
    bad query (a backtracking regular expression over every ``body``) runs for
    many minutes unless it is killed. ``objects`` is a
    :class:`~django_mysql_pooled.cancel.queryset.CancellableQuerySet` manager so that
    ``Review.objects.filter(...).cancellable(...)`` type-checks; at run time
    ``cancellable()`` is on every queryset anyway (``AppConfig.ready()``).
    """

    objects = CancellableQuerySet.as_manager()

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reviews")
    rating = models.PositiveSmallIntegerField()
    body = models.TextField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"review {self.pk} of product {self.product_id} ({self.rating}/5)"
