#!/usr/bin/env bash
# Install what the Docker tests and `make image` need from Debian's packages:
#   docker.io (dockerd 20.10, with containerd 1.6 and runc 1.1), debootstrap (the base image),
#   busybox-static (the test web server image).
# Idempotent and quick when done: it asks dpkg, and apt only for what is missing.
# No service is started: apt's invoke-rc.d is told "no" for the duration (policy-rc.d), since a
# system dockerd with its bridge and iptables rules is exactly what our harness avoids.
# A machine whose engine comes from elsewhere (docker-ce, Docker Desktop) keeps it: a working
# `dockerd` or `docker` client is not replaced.
# Outside CI, a machine that cannot install (not Debian, no root) gets a warning and exit 0: the
# Docker tests then skip. Under CI (CI set) that is an error.
set -euo pipefail

packages=()
have_package() { dpkg-query --show --showformat='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

if ! command -v dockerd >/dev/null || ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
  packages+=(docker.io)
fi
command -v debootstrap >/dev/null || packages+=(debootstrap)
have_package debian-archive-keyring || packages+=(debian-archive-keyring)  # debootstrap checks signatures
have_package busybox-static || packages+=(busybox-static)
command -v unshare >/dev/null || packages+=(util-linux)
command -v iptables >/dev/null || packages+=(iptables)  # the node's DNAT to the apiserver, in its own netns
command -v gcc >/dev/null || packages+=(gcc libc6-dev)  # the node's static pause binary

if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

fail() {
  if [ -n "${CI:-}" ]; then
    echo "tools/docker/install.sh: $1" >&2
    exit 1
  fi
  echo "tools/docker/install.sh: warning: $1; the Docker tests will be skipped" >&2
  exit 0
}

command -v apt-get >/dev/null || fail "no apt-get: install ${packages[*]} yourself"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    fail "need root to install ${packages[*]}"
  fi
fi

started=$SECONDS
echo "installing ${packages[*]} from Debian's packages" >&2
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
  backup=$(mktemp)
  "${sudo[@]}" cp -p "$policy" "$backup"
fi
restore() {
  if [ -n "$backup" ]; then "${sudo[@]}" mv -f "$backup" "$policy"; else "${sudo[@]}" rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\n# tools/docker/install.sh: start no service while installing\nexit 101\n' |
  "${sudo[@]}" tee "$policy" >/dev/null
"${sudo[@]}" chmod 0755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}
# The package lists may be missing or stale on a fresh machine: update once, then retry.
if ! apt_install 2>/dev/null; then
  "${sudo[@]}" apt-get update -qq
  apt_install
fi
echo "installed ${packages[*]} in $((SECONDS - started)) s" >&2
