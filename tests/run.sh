#!/usr/bin/env bash
# Runs Gatehouse's whole test suite on a fresh Debian machine with Rust:
# installs what the tests need when it is missing, builds the binary the end-to-end tests start, runs cargo test.
# Usage: tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, as command:package: Pebble is the ACME tests' CA, openssl's s_client checks
# handshakes without SNI, chromium renders the admin dashboard, redis-server is the cluster tests' shared store (they fail, not skip, without them). Certificates are made by the tests themselves (rcgen); the benchmark (bench/run.sh) installs its own tools.
# make builds jemalloc, the binary's allocator (tikv-jemalloc-sys runs its configure and make).
needed=(make:make pebble:pebble pebble-challtestsrv:pebble openssl:openssl chromium:chromium redis-server:redis-server redis-cli:redis-tools)
missing=()
for pair in "${needed[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # sort -u: two commands can come from one package (pebble).
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# The end-to-end tests (tests/) start the real binary from target/debug.
cargo build -p gatehouse
cargo test --workspace --no-fail-fast "$@"

# The fuzz targets (fuzz/, docs/fuzzing.md) must build and find nothing on their seeds: each runs 10 s.
# cargo-fuzz wants a nightly compiler for its sanitizer flags; RUSTC_BOOTSTRAP lets the stable one take them.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
fuzz_work="$(mktemp -d)"
trap 'rm -rf "$fuzz_work"' EXIT
for target in $(cargo fuzz list); do
  mkdir -p "$fuzz_work/$target"
  # New inputs go to the scratch folder; the committed seeds are only read.
  cargo fuzz run "$target" "$fuzz_work/$target" "fuzz/corpus/$target" -- -max_total_time=10
done
echo "tests/run.sh: every test passed, and the fuzz targets ran clean"
