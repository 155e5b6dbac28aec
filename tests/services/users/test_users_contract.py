"""The published OpenAPI document is sound, and real answers match its schemas."""

from __future__ import annotations

from common.validation import OpenApiDocument
from services.users.app import OPENAPI_PATH
from tests.support.openapi import load_sound_document


def test_every_component_schema_is_valid_json_schema() -> None:
    document = load_sound_document(OPENAPI_PATH)
    for name in ("Profile", "ProfileUpdate", "ProfileProvision"):
        assert document.document["components"]["schemas"][name]["additionalProperties"] is False


async def test_answers_match_the_published_schemas(users_client, provision, headers) -> None:
    document = OpenApiDocument.load(OPENAPI_PATH)
    user_id = await provision("zoe", "Zoë Z.")
    me = headers.user(user_id)
    document.check("Profile", await (await users_client.get("/users/me", headers=me)).json())
    patched = await users_client.patch("/users/me", json={"display_name": "Zed"}, headers=me)
    document.check("Profile", await patched.json())
