#!/usr/bin/env bash
# The test command (README.md, "Test"; .ci/run calls it): installs the tools the tests use
# when they are missing, from Debian packages, then runs the workspace's tests.
#
#   ./test.sh                 # everything
#   ./test.sh -p sn-codec     # arguments go to `cargo test --workspace`
#
# Needs a Rust toolchain (rustup) and, to install what is missing, root or sudo.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
# Black-box tests start their own mosquitto on a free loopback port (mosquitto_passwd comes
# with it), and make throwaway TLS certificates with openssl.
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
# The zero-config test watches the embedded broker with mosquitto_sub, as a user would.
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# Serial-link tests talk over pty pairs made by socat.
command -v socat >/dev/null 2>&1 || missing+=(socat)
# Several tests signal their children with the kill binary (procps); bash's builtin `kill`
# does not count, so look on $PATH only.
type -P kill >/dev/null 2>&1 || missing+=(procps)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "test.sh: the tests need ${missing[*]}; as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "test.sh: installing ${missing[*]} from Debian packages"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --workspace "$@"
