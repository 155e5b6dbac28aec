"""The curl walkthrough of the token flow that `make run` prints and the README shows."""

from __future__ import annotations

WALKTHROUGH = """\
GW={gateway}
# 1. register (a second run answers 409: the name is taken, which is fine)
curl -s -X POST $GW/auth/register -H 'Content-Type: application/json' \\
  -d '{{"username": "alice", "password": "correct horse battery", "display_name": "Alice"}}'; echo
# 2-3. log in: the auth service checks the password and issues a signed token
TOKEN=$(curl -sf -X POST $GW/auth/login -H 'Content-Type: application/json' \\
  -d '{{"username": "alice", "password": "correct horse battery"}}' \\
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
# 4-5. send the token on every request; the gateway verifies it and forwards
curl -sf $GW/users/me -H "Authorization: Bearer $TOKEN"; echo
curl -sf -X POST $GW/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"items": [{{"sku": "book-1", "quantity": 2, "unit_price_cents": 1250}}]}}'; echo
curl -sf $GW/orders -H "Authorization: Bearer $TOKEN"; echo
# without a token: 401 problem+json
curl -s $GW/orders; echo
"""

DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def walkthrough(gateway: str = DEFAULT_GATEWAY) -> str:
    return WALKTHROUGH.format(gateway=gateway)
