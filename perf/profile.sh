#!/usr/bin/env bash
# Profiles the pbxlink data plane under the capacity harness's load and
# renders a flamegraph. cpu-clock sampling: these VMs have no hardware
# counters. Installs linux-perf and inferno when missing.
#
#   perf/profile.sh [CALLS] [SECONDS]     (defaults: 500 calls, 5 s)
#
# Output: target/perf/pbxlink.svg (flamegraph) and target/perf/report.txt
# (the hottest symbols, kernel and user space).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pbxlink_apt_install "${PBXLINK_BUILD_PACKAGES[@]}" linux-perf python3-pylibsrtp rtpengine-daemon
command -v inferno-flamegraph >/dev/null || cargo install --locked --quiet inferno
CALLS="${1:-500}"
SECONDS_RUN="${2:-5}"
cargo build --release --quiet -p pbxlink -p pbxlink-bench
mkdir -p target/perf
./target/release/capacity --target pbxlink --pbxlink-backend "${BACKEND:-uring}" --calls "$CALLS" --seconds $((SECONDS_RUN + 4)) > target/perf/capacity.txt 2>&1 &
harness=$!
for _ in $(seq 50); do
    pid=$(pgrep -f "pbxlink relay" | head -1 || true)
    [ -n "$pid" ] && break
    sleep 0.1
done
[ -n "${pid:-}" ] || { echo "pbxlink relay did not start"; exit 1; }
sleep 3 # past the warm-up
perf record -e cpu-clock -F 2999 -g -p "$pid" -o target/perf/perf.data -- sleep "$SECONDS_RUN" 2>/dev/null
wait "$harness" || true
# (head closes the pipe early; that is not a failure)
perf report -i target/perf/perf.data --stdio --no-children --sort sym 2>/dev/null | grep -E '^\s+[0-9]' | head -40 > target/perf/report.txt || true
perf script -i target/perf/perf.data 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > target/perf/pbxlink.svg
grep -v '^  ' target/perf/capacity.txt || true
echo "hottest symbols: target/perf/report.txt; flamegraph: target/perf/pbxlink.svg"
