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
# The DTLS link builds against the system libssl (openssl-sys finds it with pkg-config).
pkg-config --exists libssl 2>/dev/null || missing+=(libssl-dev pkg-config)
# The Mbed TLS DTLS engine (feature dtls-mbedtls, on by default) is built from the C sources
# mbedtls-rs-sys bundles: cmake and ninja build them, bindgen needs clang's libclang.
command -v clang >/dev/null 2>&1 || missing+=(clang)
compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null ||
    compgen -G '/usr/lib/*/libclang*.so*' >/dev/null || missing+=(libclang-dev)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
# The DTLS interop tests run python-mbedtls as a client (pip, below).
python3 -c 'import mbedtls' >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || missing+=(python3-pip)
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

if ! python3 -c 'import mbedtls' >/dev/null 2>&1; then
    echo "test.sh: installing python-mbedtls from PyPI (the DTLS interop tests' client)"
    pip3 install --quiet --user --break-system-packages python-mbedtls 2>/dev/null ||
        pip3 install --quiet --break-system-packages python-mbedtls 2>/dev/null ||
        pip3 install --quiet python-mbedtls
fi

exec cargo test --workspace "$@"
