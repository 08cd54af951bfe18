"""The three views of the public contract: dispatch, dispatch with a 202 reply, and status.

``AsyncDispatchMiddleware`` gives each request ``dispatch_async``,
``dispatch_async_json`` and ``get_async_result``.
"""

import json

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import JsonResponse
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from shop.tasks import send_welcome_email, transcode_video


def bad_request(message):
    return JsonResponse({"error": message}, status=400)


@csrf_exempt  # Demo only, so curl can POST without a CSRF token. Keep CSRF protection in a real project.
@require_POST
def signup(request):
    user_email = request.POST.get("email", "").strip()
    try:
        validate_email(user_email)
    except ValidationError:
        return bad_request("POST a form field 'email' holding a valid e-mail address.")
    # ... create the account here ...
    result = request.dispatch_async(send_welcome_email, {"email": user_email})
    return JsonResponse({"job_id": result.id})


@csrf_exempt  # Demo only, so curl can POST without a CSRF token. Keep CSRF protection in a real project.
@require_POST
def process_video(request):
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return bad_request(f"The request body must be JSON: {exc}.")
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("video_id"), str)
        or not payload["video_id"]
    ):
        return bad_request('The request body must be a JSON object with a string "video_id".')
    formats = payload.get("formats")
    if formats is not None and not (isinstance(formats, list) and all(isinstance(f, str) for f in formats)):
        return bad_request('"formats", when given, must be a list of strings.')
    # 202 Accepted, {"status": "queued", "job_id": ..., "status_url": ...} and a Location header.
    return request.dispatch_async_json(transcode_video, payload)


@require_GET
def job_status(request, job_id):
    try:
        result = request.get_async_result(job_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": f"No job with id {job_id!r}."}, status=404)
    body = {
        "job_id": result.id,
        "task": result.task.name,
        "status": result.status,  # READY, RUNNING, SUCCESSFUL or FAILED
        "attempts": result.attempts,
        "enqueued_at": result.enqueued_at,
        "finished_at": result.finished_at,
        "errors": [
            {
                "exception": error.exception_class_path,
                # The traceback's last line: "ExceptionClass: message".
                "message": error.traceback.strip().splitlines()[-1] if error.traceback.strip() else "",
            }
            for error in result.errors
        ],
    }
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["return_value"] = result.return_value
    return JsonResponse(body)
