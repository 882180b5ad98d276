"""``manage.py seed_reviews``: fill ``shop_review`` with enough rows that a bad query is slow.

Fast and idempotent: nothing happens when the table already holds ``--rows``
reviews. Otherwise a first batch of ``--base`` reviews (random words, fixed
seed) is inserted from Python, then the table is doubled with
``INSERT ... SELECT`` until it holds ``--rows`` (262,144 by default: 1,024
doubled 8 times, about 2 s on a laptop). Each copy rotates the words of its
body and shifts its rating, so the rows are not all identical. A run that
was interrupted resumes from the rows it finds. ``GET_LOCK`` keeps two
concurrent runs from seeding twice.
"""

from __future__ import annotations

import random
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from shop.models import Product, Review

#: Words of the generated reviews: letters and spaces only, so that the
#: cancellation demo's pattern (which wants a digit) matches no row at all.
_VOCABULARY = (
    "great good fine poor awful cheap pricey solid flimsy sturdy fast slow quiet loud bright dim "
    "battery screen strap handle lid box manual cable charger button switch fabric finish colour "
    "size fit weight smell delivery courier packaging refund support warranty seller "
    "arrived broke works stopped returned loved hated recommend expected ordered replaced "
    "really very quite barely mostly never always after before within the a it is was for my and but"
)
WORDS = tuple(_VOCABULARY.split())
LOCK = "dmp_seed_reviews"


class Command(BaseCommand):
    help = "Create the demo reviews (idempotent): a random first batch, then doubled with INSERT ... SELECT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=262_144, help="reviews wanted (default: %(default)s)")
        parser.add_argument(
            "--base", type=int, default=1_024, help="random reviews to start from (default: %(default)s)"
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed of the first batch (default: %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        rows: int = options["rows"]
        base: int = options["base"]
        if rows < 1 or base < 1:
            raise CommandError("--rows and --base must be >= 1")
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 120)", [LOCK])
            got = cursor.fetchone()
            if not got or got[0] != 1:
                raise CommandError(f"another seed_reviews holds GET_LOCK({LOCK!r}) for more than 120 s")
            try:
                have = Review.objects.count()
                if have >= rows:
                    self.stdout.write(f"{have} reviews present (>= {rows}): nothing to seed")
                    return
                inserted = self._seed(cursor, have, rows, base, options["seed"])
            finally:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [LOCK])
        self.stdout.write(
            f"{have + inserted} reviews ready ({inserted} inserted in {time.monotonic() - started:.2f} s)"
        )

    def _seed(self, cursor: Any, have: int, rows: int, base: int, seed: int) -> int:
        inserted = 0
        if have == 0:
            products = list(Product.objects.values_list("pk", flat=True))
            if not products:
                raise CommandError("no products: run `manage.py seed_shop` first")
            rng = random.Random(seed)
            batch = [
                Review(
                    product_id=rng.choice(products),
                    rating=rng.randint(1, 5),
                    body=" ".join(rng.choice(WORDS) for _ in range(rng.randint(24, 40))),
                )
                for _ in range(min(base, rows))
            ]
            Review.objects.bulk_create(batch, batch_size=500)
            have = inserted = len(batch)
        table = connection.ops.quote_name(Review._meta.db_table)
        generation = 0
        while have < rows:
            generation += 1
            shift = 1 + generation % 7  # words moved from the end of the body to its front
            # Autocommit: each doubling is one statement, all or nothing; a
            # rerun after an interruption carries on from the count it finds.
            cursor.execute(
                f"INSERT INTO {table} (product_id, rating, body) "
                "SELECT product_id, 1 + (rating + %s) %% 5, "
                "CONCAT(SUBSTRING_INDEX(body, ' ', -%s), ' ', "
                "LEFT(body, CHAR_LENGTH(body) - CHAR_LENGTH(SUBSTRING_INDEX(body, ' ', -%s)) - 1)) "
                f"FROM {table} ORDER BY id LIMIT %s",
                [generation, shift, shift, min(have, rows - have)],
            )
            have += cursor.rowcount
            inserted += cursor.rowcount
        return inserted
