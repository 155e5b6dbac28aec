"""Typed application keys of the users service."""

from __future__ import annotations

from aiohttp import web

from common.validation import OpenApiDocument
from services.users.metrics import UsersMetrics
from services.users.repository import ProfileRepository

OPENAPI = web.AppKey("users_openapi", OpenApiDocument)
REPOSITORY = web.AppKey("users_repository", ProfileRepository)
METRICS = web.AppKey("users_metrics", UsersMetrics)
