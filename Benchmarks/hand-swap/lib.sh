# shellcheck shell=bash
# Sourced by Benchmarks/hand-swap/*: the bed's lease, the guest they swap by hand, and the
# pieces each of them needs, in one place.
state=/run/vfshift-testbed/state.json
[[ -s $state ]] || { echo "hand-swap: $state missing: bring the bed up first (deploy/testbed/up)" >&2; exit 1; }
exec 9>/run/vfshift-testbed/tests.lock
flock -w 600 9 || { echo "hand-swap: the bed's lease is held by someone else" >&2; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vm=vfs-g3 ip=198.18.0.13 mac=52:54:00:18:00:0d
serial=/var/log/vfshift-testbed/$vm.serial.log
dnsmasq_log=/var/log/vfshift-testbed/dnsmasq.log
V() { virsh -q -c qemu:///system "$@"; }
work=$(mktemp -d /tmp/vfshift-hand-swap.XXXXXX)
# The pool NIC as the swapper attaches it: the guest's MAC, the stand-in pool.
echo "<interface type='network'><mac address='$mac'/><source network='vfs-pool'/><model type='virtio'/><alias name='ua-vfshift-vf'/></interface>" >"$work/vf.xml"
old_port() { V domiflist $vm | awk '$3=="vfsbr0"{print $1}'; }
# The attached pool NIC's host device (a macvtap) and its bridge port: the veth
# peer of the macvtap's lower device (the bed's stand-in VF).
new_nic() { V domiflist $vm | awk '$3=="vfs-pool"{print $1}'; }
new_port() {
  local lower
  lower=$(basename "$(readlink -f /sys/class/net/"$1"/lower_* | head -1)")
  ip -o link show "$lower" | sed -n 's/.*@\([^:]*\):.*/\1/p'
}
# A paced TCP stream from the bed's namespace to a guest's sink: stream IP BYTES_PER_SECOND.
stream() {
  ip netns exec vfs-src python3 -c "
import socket, time
s = socket.create_connection(('$1', 5001)); c = b'\0' * 16384; t0 = time.monotonic(); n = 0
while True:
    s.sendall(c); n += len(c); a = n / $2 - (time.monotonic() - t0)
    if a > 0: time.sleep(a)
" >/dev/null 2>&1 9>&- &
}
# The guest agent's guest-exec, as the tests' inGuest: in_guest_start CMD prints a pid,
# in_guest_output PID waits for it and prints its stdout; in_guest CMD does both.
in_guest_start() {
  V qemu-agent-command $vm "$(python3 -c 'import json,sys; print(json.dumps({"execute": "guest-exec", "arguments":
    {"path": "/bin/sh", "arg": ["-c", sys.argv[1]], "capture-output": True}}))' "$1")" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["return"]["pid"])'
}
in_guest_output() {
  python3 - "$vm" "$1" <<'PY'
import base64, json, subprocess, sys, time
vm, pid = sys.argv[1], int(sys.argv[2])
for _ in range(200):
    r = json.loads(subprocess.check_output(["virsh", "-q", "qemu-agent-command", vm,
        json.dumps({"execute": "guest-exec-status", "arguments": {"pid": pid}})]))["return"]
    if r.get("exited"): print(base64.b64decode(r.get("out-data", "")).decode(), end=""); sys.exit(0)
    time.sleep(0.05)
sys.exit("hand-swap: guest-exec did not finish")
PY
}
in_guest() { in_guest_output "$(in_guest_start "$1")"; }
