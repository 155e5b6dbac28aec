"""Serve the browser demo (./frontend) on one origin, telling it where the gateway is."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aiohttp import web


def create_app(root: Path, gateway: str, origin: str) -> web.Application:
    app = web.Application()
    config = f"export const config = {json.dumps({'gateway': gateway, 'origin': origin})};\n"
    # The live order stream is a WebSocket to the gateway: ws(s):// is a scheme of its own
    # to connect-src, so the gateway is listed under both.
    gateway_ws = "ws" + gateway.removeprefix("http")

    async def config_js(request: web.Request) -> web.Response:
        return web.Response(text=config, content_type="text/javascript")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        # The page may talk to itself and to the gateway, and to nothing else. No inline
        # script or style; forms never submit natively (JS handles them, so a password can
        # never land in a URL); Trusted Types make every string-to-markup sink (innerHTML,
        # document.write ...) throw, so server text can only ever be rendered as text.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; connect-src 'self' {gateway} {gateway_ws}; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
            "require-trusted-types-for 'script'; trusted-types 'none'"
        )
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"

    app.on_response_prepare.append(security_headers)
    app.router.add_get("/config.js", config_js)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    if root.is_dir():
        app.router.add_static("/", root, follow_symlinks=False)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(args.root, args.gateway, args.origin),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
