#!/usr/bin/env bash
# Build the Passgate image (`make image`): deploy/Dockerfile on one of two bases.
#
#   1. python:3.11-slim-bookworm from a registry, when the registry answers;
#   2. otherwise a Debian bookworm base made here from Debian's packages (debootstrap, then
#      `import`), holding the same Python minor version (3.11) and CA certificates. Needs
#      root and debootstrap; the base is cached per day under $PASSGATE_CACHE_DIR.
#
# Settings (environment):
#   IMAGE             tag to build                        (passgate:dev)
#   CONTAINER_CLI     podman or docker                    (podman if installed, else docker)
#   PYTHON_IMAGE      use this base and skip the choice   (unset)
#   REGISTRY_BASE     the registry base to try            (docker.io/library/python:3.11-slim-bookworm)
#   PASSGATE_CACHE_DIR where Debian bases are kept        (${XDG_CACHE_HOME:-~/.cache}/passgate)
#   DEBIAN_MIRROR     debootstrap's mirror                (debootstrap's own default)
#   BUILD_CA_BUNDLE   CA bundle pip in the build trusts   ($PIP_CERT: a TLS-intercepting proxy's CA)
# With podman, CONTAINERS_CONF defaults to deploy/podman/containers.conf (root without
# systemd); PODMAN_ARGS adds global options, e.g. "--root DIR --runroot DIR" for a private store.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-passgate:dev}
REGISTRY_BASE=${REGISTRY_BASE:-docker.io/library/python:3.11-slim-bookworm}
CACHE_DIR=${PASSGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/passgate}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-}
DEBIAN_BASE_TAG=localhost/passgate-base:bookworm

if [ -z "${CONTAINER_CLI:-}" ]; then
  if command -v podman >/dev/null; then CONTAINER_CLI=podman
  elif command -v docker >/dev/null; then CONTAINER_CLI=docker
  else echo "build-image: neither podman nor docker is installed" >&2; exit 2
  fi
fi
cli=("$CONTAINER_CLI")
if [ "$CONTAINER_CLI" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
  # shellcheck disable=SC2206  # PODMAN_ARGS is a list of options, split on purpose
  cli+=(${PODMAN_ARGS:-})
fi

log() { echo "build-image: $*" >&2; }

# A root filesystem of Debian bookworm with python3, python3-venv and CA certificates, as a
# tar in the cache (one per day: security updates arrive, the cost stays one debootstrap a day).
debian_base_tar() {
  local tar="$CACHE_DIR/debian-bookworm-python3-$(date -u +%Y%m%d).tar"
  if [ -s "$tar" ]; then
    echo "$tar"
    return
  fi
  command -v debootstrap >/dev/null || { log "no registry and no debootstrap (apt-get install debootstrap)"; exit 2; }
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 2; }
  mkdir -p "$CACHE_DIR"
  local root
  root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  chmod 0755 "$root"  # it becomes the image's /, which the unprivileged user must traverse
  log "no registry base; making a Debian bookworm base with debootstrap (about 2 minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$root.log" 2>&1 \
    || { log "debootstrap failed, see $root.log"; rm -rf "$root"; exit 1; }
  # Package caches and documentation are not needed at run time (and apt never runs in the image).
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
         "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
  tar --numeric-owner -C "$root" -cf "$tar.partial" .
  mv "$tar.partial" "$tar"  # atomic: a half-written base is never used
  rm -rf "$root" "$root.log"
  find "$CACHE_DIR" -maxdepth 1 -name 'debian-bookworm-python3-*.tar' ! -path "$tar" -delete
  echo "$tar"
}

choose_base() {
  if [ -n "${PYTHON_IMAGE:-}" ]; then
    echo "$PYTHON_IMAGE"
  elif "${cli[@]}" pull -q "$REGISTRY_BASE" >/dev/null 2>&1; then
    echo "$REGISTRY_BASE"
  else
    log "registry base $REGISTRY_BASE not reachable"
    local tar
    tar=$(debian_base_tar)
    # LANG as python:3.11-slim sets it; PATH explicit, since an imported tar has no config.
    "${cli[@]}" import \
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV LANG=C.UTF-8" \
      "$tar" "$DEBIAN_BASE_TAG" >/dev/null
    echo "$DEBIAN_BASE_TAG"
  fi
}

build_args=(--pull=false -f deploy/Dockerfile -t "$IMAGE")
# The CA bundle reaches pip as a build secret, so it is in no layer of the image.
ca=${BUILD_CA_BUNDLE:-${PIP_CERT:-}}
if [ -n "$ca" ]; then build_args+=(--secret "id=pip-ca,src=$ca"); fi

base=$(choose_base)
log "building $IMAGE on $base"
"${cli[@]}" build "${build_args[@]}" --build-arg "PYTHON_IMAGE=$base" .
log "built $IMAGE ($("${cli[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes)"
