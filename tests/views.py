import json

from django.http import HttpRequest, JsonResponse
from django.tasks.exceptions import TaskResultDoesNotExist

from tests import tasks


def signup(request: HttpRequest) -> JsonResponse:
    result = request.dispatch_async(tasks.echo, {"email": request.POST.get("email", "")})  # type: ignore[attr-defined]
    return JsonResponse({"job_id": result.id})


def process(request: HttpRequest) -> JsonResponse:
    return request.dispatch_async_json(tasks.echo, json.loads(request.body))  # type: ignore[attr-defined,no-any-return]


def job_status(request: HttpRequest, job_id: str) -> JsonResponse:
    try:
        result = request.get_async_result(job_id)  # type: ignore[attr-defined]
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse({"job_id": result.id, "status": result.status})
