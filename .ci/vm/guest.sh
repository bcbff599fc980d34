#!/usr/bin/env bash
# The vm-test guest's script: PID 1 after .ci/vm/init's switch_root. Runs every check of the
# boot, each under a timeout, records each as PASS or FAIL with its output in
# /vmwork/results (results.tsv + logs/), then powers the guest off.
# `guest.sh CHECK-FUNCTION [ARGS]` runs one check's body (that is how `check` runs them, so
# that `timeout` can stop a check and everything it started).
set -u
# shellcheck source=/dev/null
. /vmwork/vm.env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME=/root LANG=C.UTF-8 TERM=dumb
R=/vmwork/results
S=/run/vm-state # what one check leaves for the next (device paths, key files)
SELF=/vmwork/guest.sh

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "vm-guest: $*" >/dev/console; }

# ---------------------------------------------------------------- check bodies
# Each prints what it saw and returns non-zero on failure.

# authenticator-core/src/config.rs FIDELIO_AAGUID (security-key profile), as fido2-token
# prints it.
AAGUID=5f4d3c2b1a094e8f9d6c0b1a2f3e4d5c
# transports/usb/src/lib.rs USB_VID / USB_PID, as fido2-token -L prints them.
VIDPID='vendor=0x1209, product=0x0001'
PIN=4711fid

b64rand() { head -c "$1" /dev/urandom | base64 -w0; }

# hidraw_by PATTERN: the /dev/hidrawN whose HID uevent matches PATTERN (grep -E).
hidraw_by() {
    local node
    for node in /sys/class/hidraw/hidraw*; do
        [ -e "$node" ] || continue
        if grep -qE "$1" "$node/device/uevent" 2>/dev/null; then
            echo "/dev/$(basename "$node")"
            return 0
        fi
    done
    return 1
}

# wait_hidraw PATTERN SECONDS: waits for that node to exist, prints it.
wait_hidraw() {
    local dev i
    for ((i = 0; i < $2 * 5; i++)); do
        if dev=$(hidraw_by "$1") && [ -c "$dev" ]; then
            echo "$dev"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

show_hidraw() {
    echo "hidraw node: $1"
    ls -l "$1"
    sed 's/^/  /' "/sys/class/hidraw/$(basename "$1")/device/uevent"
}

lane_dev() { # lane_dev LANE: the hidraw node an earlier check found for LANE
    cat "$S/$1.dev" 2>/dev/null || {
        echo "no $1 device (an earlier check failed)" >&2
        return 1
    }
}

check_uhid_node() {
    ls -l /dev/uhid
    [ -c /dev/uhid ]
}

check_no_key_yet() {
    local out
    out=$(fido2-token -L 2>&1)
    echo "fido2-token -L: ${out:-<nothing>}"
    [ -z "$out" ]
}

# -- UHID lane (the daemon runs in this guest)

# start_uhid_daemon NAME: `fidelio serve --uhid` in its own session (it outlives the check
# and the check's timeout); waits for its hidraw node (found by the serial, fidelio-<pid>)
# and records it as lane NAME.
start_uhid_daemon() {
    [ "$HAS_UHID" = 1 ] || {
        echo "this build's 'fidelio serve' has no --uhid"
        return 1
    }
    local log=$R/$1-daemon.log
    setsid "$FIDELIO" serve --uhid --ephemeral --udp 127.0.0.1:0 --control 127.0.0.1:0 \
        >"$log" 2>&1 </dev/null &
    local pid=$! dev
    echo "$pid" >"$S/$1.pid"
    echo "fidelio serve --uhid: pid $pid"
    if ! dev=$(wait_hidraw "HID_UNIQ=fidelio-$pid\$" 30); then
        echo "no hidraw node with HID_UNIQ=fidelio-$pid after 30 s; hidraw nodes:"
        grep -H . /sys/class/hidraw/*/device/uevent 2>/dev/null
        echo "daemon log:"
        cat "$log"
        return 1
    fi
    echo "$dev" >"$S/$1.dev"
    show_hidraw "$dev"
    echo "daemon log:"
    cat "$log"
}

check_uhid_daemon() {
    start_uhid_daemon uhid
}

check_token_list() { # LANE
    local dev out
    dev=$(lane_dev "$1") || return 1
    out=$(timeout 30 fido2-token -L 2>&1)
    echo "fido2-token -L:"
    echo "$out"
    grep -F "$dev: " <<<"$out" | grep -qF "$VIDPID"
}

check_token_info() { # LANE
    local dev out ok=0
    dev=$(lane_dev "$1") || return 1
    out=$(timeout 30 fido2-token -I "$dev" 2>&1) || ok=1
    echo "fido2-token -I $dev:"
    echo "$out"
    grep -qE '^version strings:.*\bFIDO_2_0\b.*\bFIDO_2_1\b' <<<"$out" || {
        echo "NO FIDO_2_0 + FIDO_2_1 in the versions"
        ok=1
    }
    grep -qE '^version strings:.*\bU2F_V2\b' <<<"$out" || {
        echo "NO U2F_V2 in the versions"
        ok=1
    }
    grep -qx "aaguid: $AAGUID" <<<"$out" || {
        echo "NOT our AAGUID $AAGUID"
        ok=1
    }
    grep -qE '^options:.*\brk\b.*\bcredMgmt\b' <<<"$out" || {
        echo "NO rk / credMgmt option"
        ok=1
    }
    return $ok
}

# fido2-cred(1): -M reads client data hash (base64), RP ID, user name, user ID (base64) and
# writes client data hash, RP ID, fmt, authData, credential ID, signature[, x5c]; -V checks
# the attestation statement and writes the credential ID and the public key (PEM).
check_cred_make() { # LANE
    local dev d=$S/$1-cred
    dev=$(lane_dev "$1") || return 1
    mkdir -p "$d"
    printf '%s\n' "$(b64rand 32)" "vm-test.$1.example" "vm-test user" "$(b64rand 16)" >"$d/param"
    echo "input:"
    cat "$d/param"
    timeout 60 fido2-cred -M -i "$d/param" -o "$d/made" "$dev" es256 || return 1
    echo "fido2-cred -M output:"
    cat "$d/made"
    [ "$(sed -n 3p "$d/made")" = packed ] || {
        echo "fmt is not packed"
        return 1
    }
}

check_cred_verify() { # LANE
    local d=$S/$1-cred
    [ -s "$d/made" ] || {
        echo "no fido2-cred -M output"
        return 1
    }
    timeout 60 fido2-cred -V -i "$d/made" -o "$d/verified" es256 || return 1
    echo "fido2-cred -V output:"
    cat "$d/verified"
    sed -n '2,$p' "$d/verified" >"$d/pubkey.pem"
    grep -q 'BEGIN PUBLIC KEY' "$d/pubkey.pem"
}

# fido2-assert(1): -G reads client data hash, RP ID, credential ID and writes client data
# hash, RP ID, authData, signature; -V checks the signature with the public key.
check_assert_get() { # LANE
    local dev d=$S/$1-cred
    dev=$(lane_dev "$1") || return 1
    [ -s "$d/verified" ] || {
        echo "no verified credential"
        return 1
    }
    printf '%s\n' "$(b64rand 32)" "vm-test.$1.example" "$(sed -n 1p "$d/verified")" >"$d/aparam"
    echo "input:"
    cat "$d/aparam"
    timeout 60 fido2-assert -G -p -i "$d/aparam" -o "$d/assertion" "$dev" es256 || return 1
    echo "fido2-assert -G output:"
    cat "$d/assertion"
}

check_assert_verify() { # LANE
    local d=$S/$1-cred
    [ -s "$d/assertion" ] || {
        echo "no fido2-assert -G output"
        return 1
    }
    timeout 60 fido2-assert -V -p -i "$d/assertion" "$d/pubkey.pem" es256 || return 1
    echo "fido2-assert -V: the signature verifies, UP set"
    # The same assertion with one signature bit flipped must not verify.
    local sig
    sig=$(sed -n 4p "$d/assertion" | base64 -d | od -An -v -tx1 | tr -d ' \n')
    sig=${sig:0:20}$(printf '%x' $((0x${sig:20:1} ^ 1)))${sig:21}
    {
        sed -n 1,3p "$d/assertion"
        "$VENV/bin/python" -c 'import base64,sys; print(base64.b64encode(bytes.fromhex(sys.argv[1])).decode())' "$sig"
    } >"$d/assertion.bad"
    if timeout 60 fido2-assert -V -p -i "$d/assertion.bad" "$d/pubkey.pem" es256 2>&1; then
        echo "a corrupted signature verified too"
        return 1
    fi
    echo "the corrupted signature is rejected"
}

# -- headless Chromium against a local RP verified by py_webauthn (before any PIN exists)

check_chromium_uhid_daemon() {
    # A fresh daemon (no PIN: with one, Chromium would need UI to collect it).
    start_uhid_daemon uhid2
}

# chromium_start URL PROFILE: a headless Chromium in its own session; prints its pid. Flags:
# the recipe's, plus fewer processes and background services — TCG makes every process
# start slow, and a network service that is not connected within 15 s quits.
chromium_start() {
    setsid /usr/bin/chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$2" --enable-logging=stderr --v=0 \
        --in-process-gpu --enable-features=NetworkServiceInProcess2 \
        --disable-extensions --disable-default-apps --no-default-browser-check --mute-audio \
        --disable-features=OptimizationHints,OnDeviceModelService,Translate,MediaRouter \
        --disable-renderer-backgrounding --disable-background-timer-throttling \
        "$1" >>"$R/chromium.log" 2>&1 </dev/null &
    echo $! | tee "$S/chromium.pid"
}

chromium_stop() { # PID: the browser and everything it started (its session)
    kill -TERM -- "-$1" 2>/dev/null
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$1" 2>/dev/null
}

check_chromium_create() {
    local d=$S/chromium i
    mkdir -p "$d"
    lane_dev uhid2 >/dev/null || return 1
    "$VENV/bin/python" /vmwork/rp_server.py "$d/result.json" "$d/port" --timeout 280 \
        >"$R/rp-server.log" 2>&1 &
    local server=$!
    for ((i = 0; i < 100; i++)); do
        [ -s "$d/port" ] && break
        sleep 0.2
    done
    [ -s "$d/port" ] || {
        echo "the RP server did not start:"
        cat "$R/rp-server.log"
        return 1
    }
    local url browser attempt=1 started
    url="http://localhost:$(cat "$d/port")/"
    echo "RP: $url"
    browser=$(chromium_start "$url" "$d/profile-$attempt")
    started=$SECONDS
    # Wait for the RP to finish. A browser that has not even fetched the page after 120 s is
    # stuck starting up (seen under heavy host load): one more try with a fresh profile.
    while kill -0 "$server" 2>/dev/null; do
        if ((attempt == 1 && SECONDS - started > 120)) &&
            ! grep -q '"GET / HTTP' "$R/rp-server.log"; then
            echo "chromium has not loaded the page after 120 s: starting it again"
            chromium_stop "$browser"
            attempt=2
            browser=$(chromium_start "$url" "$d/profile-$attempt")
        fi
        sleep 1
    done
    wait "$server"
    local rc=$?
    chromium_stop "$browser"
    echo "RP server (exit $rc):"
    cut -c1-400 "$R/rp-server.log"
    echo "page console:"
    grep -a 'CONSOLE.*vm-rp: ' "$R/chromium.log" | sed 's/.*"vm-rp: /  /; s/", source.*//'
    show_rp_result "$d/result.json" create && return 0
    echo "chromium's log (last 40 lines):"
    tail -n 40 "$R/chromium.log"
    return 1
}

show_rp_result() { # RESULT_JSON STAGE
    "$VENV/bin/python" - "$1" "$2" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))[sys.argv[2]]
print(f"{sys.argv[2]}(): {json.dumps(result, indent=2)}")
sys.exit(0 if result["ok"] else 1)
PY
}

check_chromium_get() {
    local d=$S/chromium
    [ -s "$d/result.json" ] || {
        echo "the create() check left no result"
        return 1
    }
    show_rp_result "$d/result.json" get
}

# -- OpenSSH resident key (needs a PIN: OpenSSH lists resident credentials with credMgmt)

check_set_pin() {
    local dev out
    dev=$(lane_dev uhid) || return 1
    timeout 60 "$VENV/bin/python" /vmwork/ptyrun.py --timeout 50 \
        --answer 'Enter new PIN' "$PIN" --answer 'Enter the same PIN again' "$PIN" \
        -- fido2-token -S "$dev" || return 1
    echo
    out=$(timeout 30 fido2-token -I "$dev" 2>&1)
    grep -E '^(options|pin retries):' <<<"$out"
    grep -qE '^options:(.*, )? ?clientPin\b' <<<"$out"
}

write_askpass() { # the program ssh-keygen runs for each prompt
    cat >"$S/askpass" <<EOF
#!/bin/sh
# Answers OpenSSH's "Enter PIN for authenticator:"; any other prompt gets an empty line.
echo "askpass asked: \$*" >>"$S/askpass.log"
case "\$*" in *PIN*) echo "$PIN" ;; *) echo ;; esac
EOF
    chmod +x "$S/askpass"
    : >"$S/askpass.log"
    export SSH_ASKPASS=$S/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=
}

check_ssh_enroll() {
    lane_dev uhid >/dev/null || return 1
    local d=$S/ssh rc
    mkdir -p "$d"
    write_askpass
    timeout 90 ssh-keygen -t ecdsa-sk -O resident -O application=ssh:fidelio-vm-test \
        -N '' -C vm-test-resident -f "$d/id_rk" </dev/null
    rc=$?
    echo "askpass log:"
    cat "$S/askpass.log"
    [ $rc = 0 ] || return 1
    cat "$d/id_rk.pub"
    grep -q '^sk-ecdsa-sha2-nistp256@openssh.com ' "$d/id_rk.pub"
}

check_ssh_download() {
    local d=$S/ssh rc got
    [ -s "$d/id_rk.pub" ] || {
        echo "no enrolled key"
        return 1
    }
    mkdir -p "$d/download"
    write_askpass
    (cd "$d/download" && timeout 90 ssh-keygen -K -N '' </dev/null)
    rc=$?
    echo "askpass log:"
    cat "$S/askpass.log"
    [ $rc = 0 ] || return 1
    ls -l "$d/download"
    got=$(cat "$d/download"/*.pub 2>/dev/null)
    echo "downloaded: $got"
    echo "enrolled:   $(cat "$d/id_rk.pub")"
    # Same key type and key blob (fields 1 and 2); the comment may differ.
    [ -n "$got" ] && [ "$(cut -d' ' -f1,2 <<<"$got")" = "$(cut -d' ' -f1,2 "$d/id_rk.pub")" ]
}

check_ssh_sign() {
    local d=$S/ssh key="" file
    for file in "$d"/download/id_*_rk*; do
        [ -f "$file" ] && [ "${file%.pub}" = "$file" ] && key=$file
    done
    [ -n "$key" ] || {
        echo "no downloaded key"
        return 1
    }
    echo "a message for the resident key" >"$d/message"
    write_askpass
    timeout 60 ssh-keygen -Y sign -f "$key" -n vm-test "$d/message" </dev/null || return 1
    echo "vm-test $(cut -d' ' -f1,2 "$key.pub")" >"$d/allowed_signers"
    timeout 30 ssh-keygen -Y verify -f "$d/allowed_signers" -I vm-test -n vm-test \
        -s "$d/message.sig" <"$d/message"
}

check_uhid_stop() { # LANE
    local pid dev i out
    pid=$(cat "$S/$1.pid" 2>/dev/null) || {
        echo "no daemon"
        return 1
    }
    dev=$(lane_dev "$1") || return 1
    kill "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "the daemon is still running 10 s after SIGTERM"
        kill -9 "$pid"
        return 1
    fi
    echo "daemon stopped"
    for ((i = 0; i < 50; i++)); do
        [ -e "$dev" ] || break
        sleep 0.1
    done
    if [ -e "$dev" ]; then
        echo "$dev is still there"
        return 1
    fi
    echo "$dev is gone"
    out=$(timeout 30 fido2-token -L 2>&1)
    echo "fido2-token -L: ${out:-<nothing>}"
    [ -z "$out" ]
}

# -- USB/IP lane (the daemon runs on the host; 10.0.2.100:3240 is forwarded to it)

check_usbip_list() {
    case "$USBIP_DAEMON" in
    absent)
        echo "this build's 'fidelio serve' has no --usbip"
        return 1
        ;;
    down)
        echo "the host's USB/IP daemon did not start"
        return 1
        ;;
    esac
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    local out rc busid
    out=$(timeout 30 usbip list -r 10.0.2.100 2>&1)
    rc=$?
    echo "usbip list -r 10.0.2.100 (exit $rc):"
    echo "$out"
    busid=$(awk '/^ *[0-9]+-[0-9.]+: / {sub(":", "", $1); print $1; exit}' <<<"$out")
    [ -n "$busid" ] || {
        echo "no exported device"
        return 1
    }
    grep -qi '1209:0001' <<<"$out" || {
        echo "the export is not 1209:0001"
        return 1
    }
    echo "$busid" >"$S/usbip.busid"
}

check_usbip_attach() {
    local busid dev
    busid=$(cat "$S/usbip.busid" 2>/dev/null) || {
        echo "no bus id"
        return 1
    }
    timeout 60 usbip attach -r 10.0.2.100 -b "$busid" || return 1
    echo "usbip attach -r 10.0.2.100 -b $busid: ok"
    if ! dev=$(wait_hidraw 'HID_PHYS=usb-vhci_hcd' 60); then
        echo "no hidraw node on vhci_hcd after 60 s; kernel log:"
        dmesg | tail -n 30
        return 1
    fi
    echo "$dev" >"$S/usbip.dev"
    show_hidraw "$dev"
    timeout 10 usbip port
    echo "kernel log:"
    dmesg | grep -E 'vhci_hcd|usb [0-9]+-[0-9]|hid-generic .*vhci' | tail -n 20
}

check_usbip_detach() {
    local dev i
    dev=$(lane_dev usbip) || return 1
    timeout 30 usbip detach -p 0 || return 1
    for ((i = 0; i < 100; i++)); do
        [ -e "$dev" ] || break
        sleep 0.1
    done
    if [ -e "$dev" ]; then
        echo "$dev is still there after usbip detach"
        return 1
    fi
    echo "detached; $dev is gone"
}

# ---------------------------------------------------------------- runner
N=0
check() { # check SECONDS "DESCRIPTION" FUNCTION [ARGS...]
    local secs=$1 name=$2 t0 t1 rc status log dt
    shift 2
    N=$((N + 1))
    log=$(printf '%02d-%s%s.log' "$N" "${1#check_}" "${2:+-$2}")
    t0=$(date +%s%N)
    timeout -k 5 "$secs" bash "$SELF" "$@" >"$R/logs/$log" 2>&1 </dev/null
    rc=$?
    t1=$(date +%s%N)
    if [ $rc = 0 ]; then status=PASS; else status=FAIL; fi
    if [ $rc = 124 ] || [ $rc = 137 ]; then echo "TIMED OUT after ${secs}s" >>"$R/logs/$log"; fi
    dt=$(printf '%d.%d' $(((t1 - t0) / 1000000000)) $(((t1 - t0) / 100000000 % 10)))
    printf '%s\t%s\t%s\t%s\n' "$status" "$dt" "$name" "$log" >>"$R/results.tsv"
    say "$status $name (${dt}s)"
    [ $rc = 0 ]
}
mark() { printf '%-8s %s\n' "$(uptime_s)" "$*" >>"$R/timings.txt"; }

setup() {
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
    mount -t tmpfs -o mode=1777 shm /dev/shm
    mount -t tmpfs -o mode=755 run /run
    mkdir -p "$S" /run/lock
    # usbip names devices from usb.ids (Debian keeps it under /var, which is not shared).
    if [ -f /vmwork/usb.ids ]; then
        mkdir -p /var/lib/usbutils
        cp /vmwork/usb.ids /var/lib/usbutils/usb.ids
    fi
    [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
    ip link set lo up
    hostname vm-test
}

main() {
    setup
    : >"$R/started"
    mark "baseline checks"
    say "guest script started at $(uptime_s)s"

    check 10 "kernel: /dev/uhid exists (uhid loaded)" check_uhid_node
    check 30 "fido2-token -L lists no key before a daemon runs" check_no_key_yet

    mark "UHID lane"
    check 45 "uhid: fidelio serve --uhid makes a hidraw node" check_uhid_daemon
    check 40 "uhid: fido2-token -L lists it (1209:0001)" check_token_list uhid
    check 40 "uhid: fido2-token -I shows our getInfo (FIDO_2_1, AAGUID)" check_token_info uhid
    check 70 "uhid: fido2-cred -M (packed attestation)" check_cred_make uhid
    check 70 "uhid: fido2-cred -V verifies it" check_cred_verify uhid
    check 70 "uhid: fido2-assert -G" check_assert_get uhid
    check 70 "uhid: fido2-assert -V verifies it, rejects a corrupted signature" check_assert_verify uhid
    mark "OpenSSH (UHID)"
    check 70 "uhid: fido2-token -S sets a PIN (through a pty)" check_set_pin
    check 100 "uhid: ssh-keygen -t ecdsa-sk -O resident (PIN via SSH_ASKPASS)" check_ssh_enroll
    check 100 "uhid: ssh-keygen -K loads the same resident key back" check_ssh_download
    check 70 "uhid: ssh-keygen -Y sign with it, ssh-keygen -Y verify" check_ssh_sign
    check 30 "uhid: stopping the daemon removes the device" check_uhid_stop uhid

    mark "USB/IP lane"
    check 40 "usbip: usbip list -r 10.0.2.100 shows the host's key (1209:0001)" check_usbip_list
    check 90 "usbip: usbip attach; vhci-hcd + usbhid make a hidraw node" check_usbip_attach
    check 40 "usbip: fido2-token -L lists it (1209:0001)" check_token_list usbip
    check 40 "usbip: fido2-token -I shows our getInfo (FIDO_2_1, AAGUID)" check_token_info usbip
    check 70 "usbip: fido2-cred -M (packed attestation)" check_cred_make usbip
    check 70 "usbip: fido2-cred -V verifies it" check_cred_verify usbip
    check 70 "usbip: fido2-assert -G" check_assert_get usbip
    check 70 "usbip: fido2-assert -V verifies it, rejects a corrupted signature" check_assert_verify usbip
    check 40 "usbip: usbip detach removes the device" check_usbip_detach

    # Last: the slowest part, and the one whose time varies most with the host's load.
    mark "Chromium (UHID)"
    check 45 "uhid: a fresh daemon (no PIN) for Chromium" check_chromium_uhid_daemon
    check 310 "uhid: Chromium navigator.credentials.create(), verified by py_webauthn" check_chromium_create
    check 20 "uhid: Chromium navigator.credentials.get(), verified by py_webauthn" check_chromium_get
    # (A browser left behind by a timed-out check.)
    [ -s "$S/chromium.pid" ] && chromium_stop "$(cat "$S/chromium.pid")"
    check 30 "uhid: stopping that daemon removes its device" check_uhid_stop uhid2

    mark "done"
    : >"$R/finished"
    sync
    say "done at $(uptime_s)s, powering off"
    echo o >/proc/sysrq-trigger
    sleep 30
}

if [ $# -gt 0 ]; then
    "$@"
    exit
fi
main
