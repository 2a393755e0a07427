#!/usr/bin/env bash
# Runs every test steward has, on a fresh machine too: installs what the tests need when it is
# missing, checks formatting and lints, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, by command name -> Debian package. python3/pip3: to install
# moto_server below. The chaos harness's run (below) needs network namespaces, nftables,
# libfaketime, libfiu and loop-mounted ext4 images.
declare -A NEED=([python3]=python3 [pip3]=python3-pip [ip]=iproute2 [nft]=nftables [faketime]=faketime
  [fiu-run]=fiu-utils [mkfs.ext4]=e2fsprogs [losetup]=mount)
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

# vendor/sled and vendor/openraft are workspace members (cargo makes every path dependency under
# the root one) but they are the published crates with small patches (vendor/README.md); their
# own tests need dev-dependencies they are vendored without, so clippy and the tests leave them
# out. Formatting covers them too.
cargo fmt --all -- --check
cargo clippy --workspace --exclude sled --exclude openraft --all-targets --quiet -- -D warnings

# The chaos harness (jepsen/README.md): a short seeded run of real members in network
# namespaces under every kind of fault. It needs root (CI runs as root); JEPSEN=0 skips it.
# Exit 1 means the checkers found a violation: it fails this script (JEPSEN_STRICT=0 only
# reports it); a harness failure (exit 2, which includes a teardown that left anything
# behind) or an undecided run (3) always fails it.
if [ "${JEPSEN:-1}" != 0 ] && [ "$(id -u)" = 0 ]; then
  cargo build --quiet -p steward -p jepsen
  target="${CARGO_TARGET_DIR:-target}"
  out="$(mktemp -d "${TMPDIR:-/tmp}/steward-jepsen.XXXXXX")"
  status=0
  "$target/debug/jepsen" --time-limit 60 --nemesis all --nemesis-interval 4 --seed "${JEPSEN_SEED:-1}" \
    --steward "$target/debug/steward" --out "$out/run" || status=$?
  case "$status" in
    0) rm -rf "$out" ;;
    1) echo "jepsen: violations found; run folder kept in $out/run (report.html)" >&2
       [ "${JEPSEN_STRICT:-1}" = 1 ] && exit 1 ;;
    *) echo "jepsen: the harness failed (exit $status); run folder kept in $out/run" >&2
       exit 1 ;;
  esac
else
  echo "skipping the chaos harness run (needs root; JEPSEN=0 skips it on purpose)"
fi

cargo test --workspace --exclude sled --exclude openraft
