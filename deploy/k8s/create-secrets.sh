#!/usr/bin/env bash
# Create the Secrets the Passgate manifests reference (values never live in git).
#
#   deploy/k8s/create-secrets.sh dev     # in-cluster databases: random passwords, URLs to them
#   deploy/k8s/create-secrets.sh prod    # external databases: URLs from the environment
#
# Secrets (namespace $NAMESPACE, default passgate):
#   auth-signing-keys          auth's signing-key directory (PEM files + metadata); only auth mounts it
#   auth-database, users-database, orders-database   key `url`: postgresql://...
#   passgate-redis             key `url` (optional for the pods; created when a URL is known)
#   <svc>-db-credentials       dev only, key `password`: the in-cluster PostgreSQL passwords
#   auth-oidc-clients          with OIDC_CLIENT_SECRETS_DIR: one file per external sign-in provider's
#                              client secret (components/external-signin); only auth mounts it
#
# Existing Secrets are left alone (re-running is safe and never changes a database password or
# the signing keys; rotate keys as deploy/README.md says).
#
# Environment:
#   NAMESPACE       target namespace (default passgate)
#   KUBECTL         kubectl command (default kubectl)
#   KEYS_DIR        an existing signing-key directory to upload; otherwise one is generated with
#                   `$PASSGATE_AUTH rotate-keys` into a temporary directory (PASSGATE_SIGNING_KEYS_DIR)
#   PASSGATE_AUTH   the auth command (default: passgate-auth on PATH, else .venv/bin/passgate-auth)
#   prod: AUTH_DATABASE_URL, USERS_DATABASE_URL, ORDERS_DATABASE_URL (required), REDIS_URL (optional)
#   OIDC_CLIENT_SECRETS_DIR  a directory with one file per provider id (e.g. `google`) holding
#                   that provider's client secret; names must match providers.yaml's client_secret_file
#   DRY_RUN=1       print the Secret manifests to stdout instead of applying (no cluster needed)
set -euo pipefail

overlay="${1:-}"
case "$overlay" in
  dev|prod) ;;
  *) echo "usage: $0 dev|prod" >&2; exit 2 ;;
esac

NAMESPACE="${NAMESPACE:-passgate}"
KUBECTL="${KUBECTL:-kubectl}"
DRY_RUN="${DRY_RUN:-0}"
repo_root="$(cd "$(dirname "$0")/../.." && pwd)"

if [ "$overlay" = prod ] && [ "$DRY_RUN" = 1 ]; then
  # Check the input before anything is created (a live run also accepts existing Secrets).
  for var in AUTH_DATABASE_URL USERS_DATABASE_URL ORDERS_DATABASE_URL; do
    if [ -z "${!var:-}" ]; then echo "$var is required for prod" >&2; exit 1; fi
  done
fi

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
chmod 700 "$workdir"

secret_exists() {
  [ "$DRY_RUN" = 1 ] && return 1
  $KUBECTL -n "$NAMESPACE" get secret "$1" >/dev/null 2>&1
}

# create_secret NAME ARGS...: `kubectl create secret generic NAME ARGS...` unless it exists.
create_secret() {
  local name="$1"; shift
  if secret_exists "$name"; then
    echo "secret/$name exists, left unchanged" >&2
    return
  fi
  if [ "$DRY_RUN" = 1 ]; then
    echo "---"
    $KUBECTL create secret generic "$name" -n "$NAMESPACE" "$@" --dry-run=client -o yaml
  else
    $KUBECTL create secret generic "$name" -n "$NAMESPACE" "$@"
  fi
}

random_password() {
  # 32 URL-safe characters, so the password needs no escaping inside a postgresql:// URL.
  openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c 32
}

if [ "$DRY_RUN" != 1 ]; then
  $KUBECTL create namespace "$NAMESPACE" --dry-run=client -o yaml | $KUBECTL apply -f - >/dev/null
fi

# --- auth's signing keys ---
if ! secret_exists auth-signing-keys; then
  if [ -n "${KEYS_DIR:-}" ]; then
    keys_dir="$KEYS_DIR"
  else
    keys_dir="$workdir/signing-keys"
    mkdir -m 700 "$keys_dir"
    if [ -z "${PASSGATE_AUTH:-}" ]; then
      if command -v passgate-auth >/dev/null 2>&1; then
        PASSGATE_AUTH=passgate-auth
      else
        PASSGATE_AUTH="$repo_root/.venv/bin/passgate-auth"
      fi
    fi
    PASSGATE_SIGNING_KEYS_DIR="$keys_dir" $PASSGATE_AUTH rotate-keys >&2
  fi
  if [ -z "$(ls -A "$keys_dir")" ]; then
    echo "no signing keys in $keys_dir" >&2; exit 1
  fi
  create_secret auth-signing-keys --from-file="$keys_dir"
fi

# --- identity-assertion keys: the gateway's and auth's private keys, the backends' trust set ---
# (rotate them with `python -m common.assertion_keys rotate`, as deploy/README.md says)
if ! secret_exists passgate-assertion-trust; then
  python="${PASSGATE_PYTHON:-$repo_root/.venv/bin/python}"
  trust_dir="$workdir/assertion-trust"
  for signer in gateway auth; do
    (cd "$repo_root" && "$python" -m common.assertion_keys generate \
      --keys "$workdir/assertion-keys-$signer" --trust "$trust_dir" --issuer "passgate-$signer" >&2)
    create_secret "$signer-assertion-keys" --from-file="$workdir/assertion-keys-$signer/keys.json" \
      $(for pem in "$workdir/assertion-keys-$signer"/*.pem; do printf -- '--from-file=%s ' "$pem"; done)
  done
  create_secret passgate-assertion-trust --from-file="$trust_dir"
fi

# --- database URLs (and, in dev, the in-cluster database passwords) ---
for svc in auth users orders; do
  if [ "$overlay" = dev ]; then
    if ! secret_exists "$svc-database"; then
      if secret_exists "$svc-db-credentials"; then
        # The database was initialised with this password: reuse it.
        password="$($KUBECTL -n "$NAMESPACE" get secret "$svc-db-credentials" \
          -o jsonpath='{.data.password}' | base64 -d)"
      else
        password="$(random_password)"
        create_secret "$svc-db-credentials" --from-literal=password="$password"
      fi
      create_secret "$svc-database" \
        --from-literal=url="postgresql://$svc:$password@$svc-db:5432/$svc"
    fi
  else
    var="$(echo "$svc" | tr a-z A-Z)_DATABASE_URL"
    url="${!var:-}"
    if [ -z "$url" ] && ! secret_exists "$svc-database"; then
      echo "$var is required for prod" >&2; exit 1
    fi
    if [ -n "$url" ]; then
      create_secret "$svc-database" --from-literal=url="$url"
    fi
  fi
done

# --- Redis (shared rate limits and login throttling) ---
if [ "$overlay" = dev ]; then
  REDIS_URL="${REDIS_URL:-redis://redis:6379/0}"
fi
if [ -n "${REDIS_URL:-}" ]; then
  create_secret passgate-redis --from-literal=url="$REDIS_URL"
fi

# --- external sign-in client secrets (only with the external-signin component) ---
if [ -n "${OIDC_CLIENT_SECRETS_DIR:-}" ]; then
  if [ -z "$(ls -A "$OIDC_CLIENT_SECRETS_DIR" 2>/dev/null)" ]; then
    echo "no client secrets in OIDC_CLIENT_SECRETS_DIR=$OIDC_CLIENT_SECRETS_DIR" >&2; exit 1
  fi
  create_secret auth-oidc-clients --from-file="$OIDC_CLIENT_SECRETS_DIR"
fi
