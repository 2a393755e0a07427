#!/usr/bin/env bash
# Runs every test steward has, on a fresh machine too: installs what the tests need when it is
# missing, checks formatting and lints, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, by command name -> Debian package.
declare -A NEED=()
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
