"""The HTTP workload's view: one primary-key lookup and one small filtered query, as JSON."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from bench.site.models import Item


def item(request: HttpRequest, pk: int) -> JsonResponse:
    obj = Item.objects.get(pk=pk)
    near = list(Item.objects.filter(bucket=obj.bucket).order_by("pk").values_list("pk", flat=True)[:5])
    return JsonResponse({"id": obj.pk, "name": obj.name, "bucket": obj.bucket, "near": near})
