"""``manage.py seed_shop``: make sure the demo's products exist, with plenty of stock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from shop.models import Product


class Command(BaseCommand):
    help = "Create (or restock) the demo products: product-000, product-001, ..."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--products", type=int, default=50, help="how many products (default: %(default)s)")
        parser.add_argument("--stock", type=int, default=1_000_000, help="stock of each (default: %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["products"]
        stock: int = options["stock"]
        created = 0
        with transaction.atomic():
            for i in range(count):
                _product, was_created = Product.objects.update_or_create(
                    name=f"product-{i:03d}",
                    defaults={"price": Decimal(100 + 7 * i) / 4, "stock": stock},
                )
                created += was_created
        self.stdout.write(f"{count} products ready ({created} created), stock {stock} each")
