#!/usr/bin/env bash
# Real calls through `pbxlink run` on loopback. The PBX is pbxsim (this
# workspace's PBX simulator): it pushes its users to the gateway's
# user-config API, serves CSTA on two servers, and places a SIP call with
# G.711 audio; the cloud is baresip (Debian baresip-core) over the
# gateway's TLS trunk, answering with SRTP and playing a 1 kHz tone. Then
# a CTI call between two users through the gateway's admin API. Prints the
# CSTA link, the events, the gateway's call lines and what each side
# decoded. Called by ./demo; needs the release binaries built.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
pbxlink_apt_install baresip-core openssl
dir="$(mktemp -d /tmp/pbxlink-demo-call.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# A CA of the demo's own and the cloud's certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=pbxlink-demo-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=cloud.test \
    -keyout "$dir/cloud.key" -out "$dir/cloud.csr" 2>/dev/null
printf 'subjectAltName=DNS:cloud.test,IP:127.0.0.1\n' > "$dir/san.cnf"
openssl x509 -req -in "$dir/cloud.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 1 -extfile "$dir/san.cnf" -out "$dir/cloud.crt" 2>/dev/null
cat "$dir/cloud.crt" "$dir/cloud.key" > "$dir/cloud.pem"

# The cloud: baresip, TLS on 127.0.0.1:25802, SRTP mandatory, a tone.
python3 - "$dir/tone.wav" <<'EOF'
import math, struct, sys, wave
w = wave.open(sys.argv[1], "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 1000 * i / 8000))) for i in range(8000 * 20)))
EOF
mkdir -p "$dir/cloud/rec"
cat > "$dir/cloud/config" <<EOF
sip_listen 127.0.0.1:25801
sip_certificate $dir/cloud.pem
sip_cafile $dir/ca.pem
audio_player aufile,/dev/null
audio_source aufile,$dir/tone.wav
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module g711.so
module srtp.so
module aufile.so
module sndfile.so
module_app account.so
snd_path $dir/cloud/rec
EOF
echo '<sip:cloud@127.0.0.1;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=PCMA/8000/1' > "$dir/cloud/accounts"
baresip -f "$dir/cloud" -n 127.0.0.1 > "$dir/baresip.log" 2>&1 < /dev/null &
pids+=($!)
sleep 1.5

# The PBX: pbxsim with 20 users, CSTA on two servers, a SIP trunk.
./target/release/pbxsim run --csta 127.0.0.1:25870 --csta 127.0.0.1:25871 --users 20 \
    --sip 127.0.0.1:25860 --gateway-sip 127.0.0.1:25850 --rtp-base 47000 \
    --control 127.0.0.1:25890 --seconds 60 > "$dir/pbxsim.log" 2>&1 &
pids+=($!)

# The gateway, from a configuration file.
token="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cat > "$dir/pbxlink.toml" <<EOF
[gateway]
lan_address = "127.0.0.1"
networks = ["127.0.0.0/8"]
state_dir = "$dir/state"

[pbx]
type = "mivoice-5000"
address = "127.0.0.1"
port = 25860
csta_ports = "25870;25871"

[cloud]
targets = ["tls:127.0.0.1:25802"]
ca = "$dir/ca.pem"
# baresip 1.0 mis-reads AEAD_AES_128_GCM keys: offer AES-CM to it.
srtp_suites = ["AES_CM_128_HMAC_SHA1_80"]

[sip]
port = 25850

[admin]
listen = "127.0.0.1:25880"
api_token = "$token"

[users]
listen = "127.0.0.1:25886"
push_password = "demo-push-password"
EOF
./target/release/pbxlink run --config "$dir/pbxlink.toml" --seconds 50 > "$dir/gateway.log" 2>&1 &
gw=$!
pids+=($gw)
for _ in $(seq 100); do grep -q "trunk: connected" "$dir/gateway.log" && break; sleep 0.1; done
grep -v '^  ' "$dir/gateway.log"
api() { python3 scripts/demo_api.py 127.0.0.1:25880 127.0.0.1:25890 "$token" "$1"; }

echo "PBX (pbxsim) pushes its 20 users to the gateway's user-config API:"
./target/release/pbxsim push --gateway 127.0.0.1:25886 --ca "$dir/state/users-api.crt" \
    --auth pbx:demo-push-password --users 20 | cut -c1-160
api csta
echo "PBX user 1000 calls the cloud through the gateway (4 s of audio each way)…"
api sip-call
echo "CTI through the gateway: 1001 calls 1002 (MakeCall), 1002 answers (AnswerCall), 1001 hangs up (ClearConnection):"
api cti-call
echo "the gateway's admin API (GET /api/status):"
api status
kill -TERM "$gw" 2>/dev/null || true
wait "$gw" 2>/dev/null || true
grep -E '^call |^final:' "$dir/gateway.log"
python3 - "$dir"/cloud/rec/*-dec.wav <<'EOF'
import math, struct, sys, wave
w = wave.open(sys.argv[1]); n = w.getnframes()
s = struct.unpack("<%dh" % n, w.readframes(n))
rms = math.sqrt(sum(x * x for x in s) / max(1, n))
print(f"cloud (baresip) decrypted and decoded {n / w.getframerate():.1f} s of the PBX's audio (RMS {rms:.0f})")
EOF
if grep -q "failed to decrypt" "$dir/baresip.log"; then echo "baresip failed to decrypt packets"; exit 1; fi
