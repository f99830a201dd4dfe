#!/usr/bin/env bash
# Benchmark Gatehouse against nginx and HAProxy as reverse proxies (loopback only).
#
#   bench/run.sh [--smoke] [--rounds N] [--duration S] [--scenarios a,b]
#                [--contenders gatehouse,nginx,haproxy] [other bench.py options]
#
# 1. installs what is missing with apt-get (nginx-light or nginx, haproxy, wrk,
#    nghttp2-client for h2load, openssl for the TLS scenarios' throwaway
#    certificates, python3), running `apt-get update` once first;
# 2. builds Gatehouse (`cargo build --release -p gatehouse`) unless GATEHOUSE_BIN
#    points at a binary, or gatehouse is not among --contenders;
# 3. runs bench/bench.py, which starts the backends and contenders, runs the load,
#    prints a Markdown table and (without --smoke) writes it into docs/benchmarks.md.
#
# Environment: GATEHOUSE_BIN=/path/to/gatehouse skips the build.
# See bench/README.md and `python3 bench/bench.py --help` for every option.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

die() { echo "bench/run.sh: error: $*" >&2; exit 2; }

if [[ " $* " == *" -h "* || " $* " == *" --help "* ]]; then
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo
    exec python3 "$here/bench.py" --help
fi

# Reject bad options now, before a long install or build.
if command -v python3 >/dev/null; then
    python3 "$here/bench.py" --check-args "$@" || exit 2
fi

# Which contenders and scenarios? (to decide whether to build Gatehouse / install
# HAProxy / openssl)
contenders="gatehouse,nginx,haproxy"
scenarios="tls-"  # default: all scenarios, TLS ones included
user_bin=""
prev=""
for arg in "$@"; do
    case "$arg" in
        --contenders=*) contenders="${arg#--contenders=}" ;;
        --scenarios=*) scenarios="${arg#--scenarios=}" ;;
        --gatehouse-bin=*) user_bin="${arg#--gatehouse-bin=}" ;;
    esac
    if [[ "$prev" == "--contenders" ]]; then contenders="$arg"; fi
    if [[ "$prev" == "--scenarios" ]]; then scenarios="$arg"; fi
    if [[ "$prev" == "--gatehouse-bin" ]]; then user_bin="$arg"; fi
    prev="$arg"
done
has() { [[ ",$contenders," == *",$1,"* ]]; }

# ---------------------------------------------------------------- 1. tools
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO="sudo"; fi
fi
updated=0
policy_created=0
cleanup_policy() {
    if [[ $policy_created -eq 1 ]]; then $SUDO rm -f /usr/sbin/policy-rc.d; policy_created=0; fi
}
trap cleanup_policy EXIT INT TERM

apt_install() {  # apt_install PKG [ALTERNATIVE...]: install the first candidate that works
    command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
    if [[ $(id -u) -ne 0 && -z "$SUDO" ]]; then die "need root (or sudo) to install $*"; fi
    if [[ $updated -eq 0 ]]; then
        # Keep Debian from starting the packaged nginx/haproxy services during install.
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
            $SUDO chmod +x /usr/sbin/policy-rc.d
            policy_created=1
        fi
        echo "bench/run.sh: apt-get update" >&2
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        updated=1
    fi
    local p
    for p in "$@"; do
        echo "bench/run.sh: apt-get install $p" >&2
        if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" >&2; then
            return 0
        fi
    done
    die "could not install any of: $*"
}

command -v python3 >/dev/null || apt_install python3
command -v nginx   >/dev/null || apt_install nginx-light nginx
command -v wrk     >/dev/null || apt_install wrk
command -v h2load  >/dev/null || apt_install nghttp2-client
if has haproxy; then command -v haproxy >/dev/null || apt_install haproxy; fi
if [[ "$scenarios" == *tls-* ]]; then command -v openssl >/dev/null || apt_install openssl; fi
# The packaged services may have been started anyway (no policy-rc.d support): they
# listen on port 80 only and do not take part in the benchmark.
cleanup_policy

# ---------------------------------------------------------------- 2. Gatehouse
args=("$@")
if has gatehouse && [[ -n "$user_bin" ]]; then
    :  # --gatehouse-bin given: bench.py checks it
elif has gatehouse; then
    if [[ -n "${GATEHOUSE_BIN:-}" ]]; then
        [[ -x "$GATEHOUSE_BIN" ]] || die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not an executable file"
        bin="$GATEHOUSE_BIN"
    else
        command -v cargo >/dev/null || die "cargo not found: install Rust, or set GATEHOUSE_BIN=/path/to/gatehouse, or use --contenders nginx,haproxy"
        echo "bench/run.sh: cargo build --release -p gatehouse" >&2
        (cd "$root" && cargo build --release -p gatehouse) || die "cargo build --release -p gatehouse failed"
        bin="${CARGO_TARGET_DIR:-$root/target}/release/gatehouse"
        [[ "$bin" == /* ]] || bin="$root/$bin"
        [[ -x "$bin" ]] || die "build succeeded but $bin is missing"
    fi
    args=(--gatehouse-bin "$bin" "${args[@]}")
fi

# ---------------------------------------------------------------- 3. run
trap - EXIT INT TERM
exec python3 "$here/bench.py" "${args[@]}"
