"""The one service-to-service grant: auth provisioning a profile at the users service.

Both sides name it from here: auth asserts this scope and client id on its call, and the
users service accepts the call only with them. No token ever carries the scope (auth's
roles leave it out), so only auth, inside the mesh, can create a profile.
"""

from __future__ import annotations

PROVISIONING_SCOPE = "profiles:provision"
PROVISIONING_CLIENT_ID = "passgate-auth"
