#!/usr/bin/env python3
"""The demo's talk with the gateway's admin API and pbxsim's control API
(scripts/demo-call.sh calls it), using only Python's standard library.

    demo_api.py ADMIN CONTROL TOKEN STEP

STEP: csta (wait for every user monitored, then show the CSTA link),
sip-call (pbxsim's user 1000 calls the cloud), cti-call (1001 calls 1002
through CSTA, 1002 answers, 1001 hangs up; the events and 1001's call
history), status (GET /api/status). Exits non-zero, saying why, when a
step does not do what it should.
"""

import json
import sys
import time
import urllib.error
import urllib.request


def call(base, method, path, token=None, body=None):
    req = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"}
        | ({"Authorization": "Bearer " + token} if token else {}),
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def main():
    admin, control, token, step = sys.argv[1:5]
    admin, control = "http://" + admin, "http://" + control
    if step == "csta":
        for _ in range(100):
            _, c = call(admin, "GET", "/api/cti")
            if c and c["monitored"] == c["users_to_monitor"] > 0:
                break
            time.sleep(0.2)
        servers = ", ".join(
            f"{s['server']} {s['state']} ({s['monitored']} users)" for s in c["servers"]
        )
        print(f"  CSTA: {c['status']} - {c['result']}; {c['monitored']} users monitored on {servers}")
        if c["status"] != "Connected":
            sys.exit("the CSTA link is not up")
    elif step == "sip-call":
        _, placed = call(control, "POST", "/sip/calls", body={"from": "1000", "to": "cloud", "seconds": 4})
        for _ in range(100):
            _, calls = call(control, "GET", "/sip/calls")
            c = next(c for c in calls if c["id"] == placed["call"])
            if c["state"].startswith("ended") or c["state"].startswith("failed"):
                break
            time.sleep(0.2)
        print(
            f"  pbxsim: call {c['state']}: sent {c['rtp_sent']} RTP packets, "
            f"received {c['rtp_received']} from the cloud, {c['rtp_lost']} lost"
        )
        if c["rtp_received"] < 100:
            sys.exit("the cloud's audio did not reach pbxsim")
    elif step == "cti-call":
        before = call(admin, "GET", "/api/cti/events?limit=0")[1]["next"] - 1
        status, made = call(admin, "POST", "/api/cti/make-call", token, {"device": "1001", "to": "1002"})
        if status != 200:
            sys.exit(f"MakeCall: {made}")
        time.sleep(0.5)
        call(admin, "POST", "/api/cti/answer", token, {"device": "1002", "call": made["call"]})
        time.sleep(1.2)
        call(admin, "POST", "/api/cti/clear", token, {"device": "1001", "call": made["call"]})
        time.sleep(0.5)
        _, ev = call(admin, "GET", f"/api/cti/events?after={before}")
        for e in ev["events"]:
            print(f"  event {e['seq']:3}: user {e['device']}: {e['event']} (call {e['call']})")
        _, user = call(admin, "GET", "/api/users/1001")
        for h in user["history"]:
            print(f"  1001's history: {h['direction']} call with {h['peer']}: {h['outcome']}, {h['duration_s']} s")
    elif step == "status":
        print("  " + json.dumps(call(admin, "GET", "/api/status")[1]))
    else:
        sys.exit(f"no step {step!r}")


if __name__ == "__main__":
    main()
