#!/usr/bin/env bash
# Build the edge image edge-camera-classifier-app:v1 with buildah where there is no Docker engine and
# no container registry: vfs storage, chroot isolation, the base from docker/build-base.sh, the host's
# CA bundle as the build secret `ca_bundle` (pip behind a TLS-inspecting proxy). Intermediate layers
# are cached in the storage, so a rebuild after a code change reinstalls nothing from PyPI.
# Prints the image id on stdout; progress goes to stderr.
#
# Env: IMAGE_TAG, IMAGE_EXTRAS (pyproject extras to add, e.g. `hub` for the hub image; default none:
# the edge alone), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt; empty: none),
# EDGE_MNIST_CACHE (default ~/.cache/edge-mnist), BUILDAH_ROOT / BUILDAH_RUNROOT.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGE_MNIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-mnist}
export EDGE_MNIST_CACHE=$CACHE
export BUILDAH_ROOT=${BUILDAH_ROOT:-$CACHE/buildah/storage}
export BUILDAH_RUNROOT=${BUILDAH_RUNROOT:-${TMPDIR:-/tmp}/edge-mnist-buildah-run}
IMAGE_TAG=${IMAGE_TAG:-edge-camera-classifier-app:v1}
IMAGE_EXTRAS=${IMAGE_EXTRAS:-}
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
bah=(buildah --storage-driver vfs --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT")

# An interrupted bud leaves its working containers behind, each a full copy of a layer under vfs.
"${bah[@]}" containers --format '{{.ContainerName}}' | grep -E -- '-working-container(-[0-9]+)?$' |
    xargs -r "${bah[@]}" rm >/dev/null || true

base=$("$repo/docker/build-base.sh")
secret=()
if [ -n "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ]; then
    secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --format docker: the OCI format has no HEALTHCHECK.
"${bah[@]}" bud --isolation chroot --network host --layers --format docker --build-arg "BASE_IMAGE=$base" \
    --build-arg "EXTRAS=$IMAGE_EXTRAS" \
    "${secret[@]}" -f "$repo/Dockerfile.edge" -t "$IMAGE_TAG" "$repo" 2>&1 | tee "$log" >&2
# Name the builder stage's last layer (the last "--> ID" before the next stage's first step), so
# pruning keeps it: it caches the PyPI install and the training.
builder=$(awk '/^\[[0-9]+\/[0-9]+\] STEP 1\// { if (inb) { print last; exit } inb = / AS builder$/ }
               $1 == "-->" { last = $NF }' "$log")
if [ -n "$builder" ]; then
    "${bah[@]}" tag "$builder" localhost/edge-mnist-builder:latest
fi

# vfs stores every layer as a full copy: drop the layers only earlier builds used (untagged images
# without children, repeatedly, as each removal can leave its parent childless), or the cache grows
# by about 2 GB per code change.
for _ in $(seq 20); do
    [ -n "$("${bah[@]}" rmi --prune 2>/dev/null)" ] || break
done
"${bah[@]}" inspect --type image --format '{{.FromImageID}}{{"\n"}}' "$IMAGE_TAG"
