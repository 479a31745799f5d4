#!/usr/bin/env bash
# Installs the Debian 12 packages shadowmm needs, skipping those already
# installed. Non-interactive and idempotent; uses sudo when not root.
set -euo pipefail

packages=(
  make cmake ninja-build g++ clang libclang-rt-14-dev ccache pkg-config
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libabsl-dev libcli11-dev nlohmann-json3-dev librapidcheck-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
