# shellcheck shell=bash
# Installs the Debian packages pbxlink needs, only those missing, with one
# `apt-get update` per run. Sourced by ./demo and ./tests/run.

PBXLINK_BUILD_PACKAGES=(libsrtp2-dev pkg-config)
# Real peers for the interop tests: libsrtp through Python, and rtpengine as
# an independent SRTP implementation; sipp; dnsmasq as the DNS server the
# RFC 3263 test resolves NAPTR/SRV/A records from; iproute2 and iptables
# for the NAT test's network namespaces and MASQUERADE router, coturn as
# the cloud's STUN server there; kamailio as the PBX's registrar for the
# Softphone users' tests; chromium for the admin page's browser test
# (playwright-core from npm drives it); OpenSSH's server and client for
# support's SSH window; curl for the package and support tests; tshark
# to capture what the gateway sends its HEP collector.
PBXLINK_TEST_PACKAGES=(python3-pylibsrtp rtpengine-daemon strace sip-tester dnsmasq-base baresip-core iproute2 iptables coturn kamailio chromium openssh-server openssh-client curl tshark)

pbxlink_apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "==> installing ${missing[*]}"
    if [ -z "${PBXLINK_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        PBXLINK_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# npm's playwright-core (pinned in tests/browser/package-lock.json) next
# to the browser test, only when missing.
pbxlink_browser_install() {
    # Node from Debian unless the machine has one (e.g. NodeSource's,
    # which carries its own npm and conflicts with Debian's npm).
    if ! command -v npm >/dev/null; then
        pbxlink_apt_install nodejs npm || return 1
    fi
    if [ ! -d tests/browser/node_modules/playwright-core ]; then
        echo "==> installing playwright-core (npm ci in tests/browser)"
        (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
    # hep-js (pinned in tests/hep/package-lock.json): the Homer project's
    # HEP library, decoding what the capture test caught.
    if [ ! -d tests/hep/node_modules/hep-js ]; then
        echo "==> installing hep-js (npm ci in tests/hep)"
        (cd tests/hep && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
}

# The gateway's own account, as the Debian package's postinst makes it
# (support's SSH logs in as it): a system user with a shell, no password.
pbxlink_account() {
    getent passwd pbxlink >/dev/null && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    echo "==> making the pbxlink account"
    $sudo adduser --system --group --quiet --home /var/lib/pbxlink --no-create-home \
        --shell /bin/sh --gecos "pbxlink gateway" pbxlink &&
        $sudo usermod -p '*' pbxlink
}
