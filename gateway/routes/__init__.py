"""The declarative route table: routes.yaml loaded and validated at start, and linted.

A route says which paths and methods reach which upstream pool, whether a token is needed
and with which scopes, and its timeout, body-size limit and rate limit. Everything is
checked once at load, with messages naming the file, the route and the field; nothing
here runs per request.

  model.py              the loaded values (RouteTable, RouteConfig, UpstreamConfig, RateLimit)
  routes.schema.json    the file's structure, ranges and every default (editors can use it)
  schema.py             the schema applied, its errors turned into one line each
  loading.py            reading, and the checks no schema can express (references, paths)
  lint.py               findings about a valid table; its errors also stop the gateway's start
"""

from gateway.routes.lint import ERROR, NOTE, lint
from gateway.routes.loading import (
    checked,
    decode_routes,
    load_routes,
    parse_routes,
    read_bytes,
    read_routes,
)
from gateway.routes.model import (
    DEFAULT_ISSUER,
    INTERNAL_PREFIX,
    PUBLIC,
    REFUSED_METHODS,
    RESERVED_PATHS,
    ROUTABLE_METHODS,
    TOKEN,
    UPSTREAM_ENV_PREFIX,
    IssuerConfig,
    RateLimit,
    RouteConfig,
    RouteCors,
    RoutesError,
    RouteTable,
    UpstreamConfig,
    override_key,
    override_variable,
    replica_problem,
)
from gateway.routes.schema import SCHEMA_PATH

__all__ = [
    "DEFAULT_ISSUER",
    "ERROR",
    "INTERNAL_PREFIX",
    "NOTE",
    "PUBLIC",
    "REFUSED_METHODS",
    "RESERVED_PATHS",
    "ROUTABLE_METHODS",
    "SCHEMA_PATH",
    "TOKEN",
    "UPSTREAM_ENV_PREFIX",
    "IssuerConfig",
    "RateLimit",
    "RouteConfig",
    "RouteCors",
    "RouteTable",
    "RoutesError",
    "UpstreamConfig",
    "checked",
    "decode_routes",
    "lint",
    "load_routes",
    "override_key",
    "override_variable",
    "parse_routes",
    "read_bytes",
    "read_routes",
    "replica_problem",
]
