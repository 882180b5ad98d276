"""The one table every workload reads (created by ``bench.db.prepare``)."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=40)
    bucket = models.IntegerField(db_index=True)

    class Meta:
        managed = False
        db_table = "item"
