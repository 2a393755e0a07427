#!/usr/bin/env bash
# Runs every test steward has, on a fresh machine too: installs what the tests need when it is
# missing, checks formatting and lints, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, by command name -> Debian package.
# python3/pip3: to install moto_server below.
declare -A NEED=([python3]=python3 [pip3]=python3-pip)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# moto_server: the S3-compatible server the log store's tests start on loopback (and stop).
if ! command -v moto_server >/dev/null 2>&1; then
  # A Debian-managed Python refuses plain pip installs (PEP 668); this machine is for tests.
  pip3 install --quiet 'moto[server]>=5,<6' \
    || pip3 install --quiet --break-system-packages 'moto[server]>=5,<6'
  hash -r
  command -v moto_server >/dev/null 2>&1 || { echo "moto_server is missing after pip install" >&2; exit 1; }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
