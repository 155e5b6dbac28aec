"""HAProxy verifying RS256 on every request (bench.haproxy) in front of the bare backend:
the C peer the gateway's CPU per request is held against (issue 14, item 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import procstat
from bench.peer import installed
from bench.haproxy import HAProxy, install_haproxy, public_key_pem, render_config, tampered, token_kid
from bench.scenarios import Figures
from devstack.processes import free_port

if TYPE_CHECKING:
    from bench.run import Bench

RUN = "haproxy (jwt_verify RS256) → bare"


async def run(ctx: Bench) -> Figures:
    binary = installed(install_haproxy, "haproxy")
    auth = ctx.stack.process("auth-1").env
    async with ctx.session.get(f"{ctx.stack.url('auth')}/.well-known/jwks.json") as response:
        response.raise_for_status()
        jwks = await response.json()
    proxy = HAProxy(binary, ctx.data_dir / "haproxy", free_port())
    proxy.directory.mkdir(parents=True, exist_ok=True)
    key_file = proxy.directory / "auth-public-key.pem"
    key_file.write_bytes(public_key_pem(jwks, token_kid(ctx.token)))
    config = render_config(proxy.directory, port=proxy.port, upstream=ctx.bare_url, key_file=key_file,
                           issuer=auth["PASSGATE_ISSUER"], audience=auth.get("PASSGATE_AUDIENCE", "passgate"))
    with ctx.on_sut():
        proxy.start(config)
    try:
        # Once at start: the peer really verifies (a valid token passes, a tampered one and
        # none are refused), so its figure is that of a JWT-checking edge.
        checks = {}
        for label, headers in (("valid", ctx.bearer(ctx.token)), ("tampered", ctx.bearer(tampered(ctx.token))),
                               ("none", {})):
            async with ctx.session.get(f"{proxy.url}/orders", headers=headers) as response:
                await response.read()
                checks[label] = response.status
        if checks != {"valid": 200, "tampered": 401, "none": 401}:
            raise RuntimeError(f"HAProxy does not verify as configured: {checks}")
        await ctx.measure(RUN, f"{proxy.url}/orders",
                          processes={"haproxy": [proxy.pid], "backend": [ctx.bare_pid]},
                          headers=ctx.bearer(ctx.token))
        version = next(iter(procstat.command_output([binary, "-v"]).splitlines()), "")
        return {"binary": binary, "version": version, "checks": checks, "config": config}
    finally:
        proxy.stop()
