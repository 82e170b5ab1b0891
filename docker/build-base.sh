#!/usr/bin/env bash
# Make a Debian base image with Python 3 for `buildah bud --build-arg BASE_IMAGE=...`, where no
# container registry is reachable: debootstrap a minimal rootfs from the Debian mirror apt uses,
# cache it as a tarball, and import it into buildah's storage. Prints the image name.
#
# Env: SUITE (default: the host's, e.g. bookworm), MIRROR (default: the host's Debian mirror),
# EDGE_MNIST_CACHE (default ~/.cache/edge-mnist), BUILDAH_ROOT / BUILDAH_RUNROOT (vfs storage).
set -euo pipefail

# shellcheck disable=SC1091
SUITE=${SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:?host has no VERSION_CODENAME}")}
CACHE=${EDGE_MNIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-mnist}
BUILDAH_ROOT=${BUILDAH_ROOT:-$CACHE/buildah/storage}
BUILDAH_RUNROOT=${BUILDAH_RUNROOT:-${TMPDIR:-/tmp}/edge-mnist-buildah-run}
# python3-venv: the builder stage makes a venv; ca-certificates: TLS to Kafka with the system CAs.
PACKAGES=python3,python3-venv,ca-certificates
RECIPE=1  # bump when what goes into the rootfs changes, so cached tarballs are made again

say() { echo "build-base: $*" >&2; }

host_mirror() {
    grep -hsE '^[[:space:]]*(URIs:|deb[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources | grep -oE 'https?://[^[:space:]]+' | grep -v -- '-security' |
        grep -m1 -i debian || true
}
MIRROR=${MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

for tool in debootstrap buildah; do
    command -v "$tool" >/dev/null || { say "$tool is missing: apt-get install -y debootstrap buildah"; exit 1; }
done
[ "$(id -u)" = 0 ] || { say "debootstrap and buildah's chroot isolation need root"; exit 1; }

key=$(echo "$SUITE $PACKAGES $RECIPE" | sha256sum | cut -c1-12)
tarball=$CACHE/base/debian-$SUITE-python3-$key.tar
image=localhost/edge-mnist-base:$SUITE
bah=(buildah --storage-driver vfs --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT")

if [ ! -s "$tarball" ]; then
    mkdir -p "$CACHE/base"
    work=$(mktemp -d "$CACHE/base/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work/log" 2>&1 ||
        { tail -n 30 "$work/log" >&2; say "debootstrap failed"; exit 1; }
    root=$work/rootfs
    # What an image needs no copy of: package lists and archives, docs, man pages, host identity.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/* "$root"/tmp/* "$root"/etc/hostname "$root"/etc/resolv.conf
    mkdir -p "$root/var/cache/apt/archives/partial"
    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$work"
    trap - EXIT
    # Older tarballs of this script are stale now.
    find "$CACHE/base" -maxdepth 1 -name "debian-$SUITE-python3-*.tar" ! -name "$(basename "$tarball")" -delete
fi

have=$("${bah[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "edge-mnist.base"}}' "$image" \
    2>/dev/null || true)
if [ "$have" != "$key" ]; then
    say "importing $tarball as $image"
    ctr=$("${bah[@]}" from --isolation chroot scratch)
    "${bah[@]}" add "$ctr" "$tarball" / >/dev/null
    "${bah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 --label "edge-mnist.base=$key" \
        --label "org.opencontainers.image.description=Debian $SUITE minbase + python3 (debootstrap)" "$ctr"
    "${bah[@]}" commit --rm --quiet "$ctr" "$image" >/dev/null
fi
echo "$image"
