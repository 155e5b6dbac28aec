"""HTTP handlers of the users service: identity and input in, repository call, JSON out."""

from __future__ import annotations

from aiohttp import web

from common.errors import Problem
from common.identity import require_identity
from common.jsonresponse import json_response
from common.provisioning import PROVISIONING_CLIENT_ID, PROVISIONING_SCOPE
from common.validation import read_json
from services.users.app_keys import METRICS, OPENAPI, REPOSITORY
from services.users.repository import ProfileConflictError

# The provisioning contract (see common.md): only the auth service calls it, with the
# client id and scope of common/provisioning.py; the gateway never routes /internal/*.


def _path_user_id(request: web.Request) -> str:
    """The {user_id} path parameter as a canonical (lower-case) UUID; 400 when malformed."""
    raw = request.match_info["user_id"]
    request.app[OPENAPI].check("UserId", raw)
    return raw.lower()


def _no_profile() -> Problem:
    return Problem(404, "no profile exists for this user", kind="profile-not-found")


async def get_own_profile(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="users:read")
    profile = await request.app[REPOSITORY].get(identity.subject)
    if profile is None:
        raise _no_profile()
    return json_response(profile.to_json())


async def update_own_profile(request: web.Request) -> web.Response:
    identity = require_identity(request, scope="users:write")
    body = await read_json(request, request.app[OPENAPI], "ProfileUpdate")
    profile = await request.app[REPOSITORY].set_display_name(identity.subject, body["display_name"])
    if profile is None:
        raise _no_profile()
    request.app[METRICS].profiles_updated.inc()
    return json_response(profile.to_json())


async def get_profile(request: web.Request) -> web.Response:
    require_identity(request, scope="admin")
    profile = await request.app[REPOSITORY].get(_path_user_id(request))
    if profile is None:
        raise _no_profile()
    return json_response(profile.to_json())


async def provision_profile(request: web.Request) -> web.Response:
    """PUT /internal/profiles/{user_id}: idempotent creation at registration (201, 200, 409)."""
    identity = require_identity(request, scope=PROVISIONING_SCOPE)
    if identity.client_id != PROVISIONING_CLIENT_ID:
        raise Problem(403, "only the auth service provisions profiles", kind="forbidden")
    user_id = _path_user_id(request)
    if identity.subject.lower() != user_id:
        raise Problem(403, "X-User-Id must name the profile being provisioned", kind="forbidden")
    body = await read_json(request, request.app[OPENAPI], "ProfileProvision")
    try:
        profile, created = await request.app[REPOSITORY].provision(
            user_id, body["username"], body.get("display_name")
        )
    except ProfileConflictError:
        raise Problem(
            409,
            "a profile with this id or username exists with different data",
            kind="profile-conflict",
        ) from None
    if created:
        request.app[METRICS].profiles_created.inc()
    return json_response(profile.to_json(), status=201 if created else 200)
