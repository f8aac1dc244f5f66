#!/usr/bin/env bash
# Debian packages the tests use. Installs only what is missing; needs root or sudo.
set -euo pipefail
# buildah and mmdebstrap build the images (scripts/images.py); gcc and libc6-dev compile the pod
# runner's exec helper (tests/podrunner/exec.c); nftables enforces NetworkPolicy between its pods.
packages=(bubblewrap iproute2 util-linux curl nodejs nginx-light testssl.sh prometheus
          buildah mmdebstrap gcc libc6-dev nftables chromium)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm runs the gateway tests' JavaScript clients and OIDC provider: Debian ships it apart from
# nodejs, NodeSource's nodejs brings its own.
command -v npm >/dev/null || missing+=(npm)
((${#missing[@]} == 0)) && exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
