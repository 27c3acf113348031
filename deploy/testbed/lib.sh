# shellcheck shell=bash
# Sourced by every deploy/testbed script: the names and the address plan live
# here once, so `up`, `down`, `reset-guest` and the Swift tests cannot drift.

TB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TB_CACHE="$TB_DIR/.cache"
# QEMU runs as libvirt-qemu and cannot be relied on to read a developer's
# checkout, so the guest's kernel and initramfs are copied to a root-owned,
# world-readable place.
TB_LIB=/var/lib/vfshift-testbed
TB_LOG=/var/log/vfshift-testbed
TB_RUN=/run/vfshift-testbed
TB_STATE="$TB_RUN/state.json"
TB_LOCK="$TB_RUN/lock"

VIRSH=(virsh -q -c qemu:///system)

# Address plan (198.18.0.0/15 is the benchmark range: nothing else uses it).
TB_BRIDGE=vfsbr0
TB_BRIDGE_MAC=02:76:66:73:00:01   # fixed: a bridge takes its lowest port MAC otherwise
TB_NETNS=vfs-src
TB_SRC_HOST_END=vfssrc-br        # on the bridge
TB_SRC_NS_END=vfssrc0            # inside the namespace
TB_SRC_IP=198.18.0.1
TB_PREFIX=24
TB_SUBNET=198.18.0.0/24
# The management network: a second bridge and subnet vfshift must never touch.
TB_MGMT_BRIDGE=vfsbr1
TB_MGMT_BRIDGE_MAC=02:76:66:73:00:02
TB_MGMT_ALIAS=ua-mgmt0
# The DHCP server (dnsmasq) in its own namespace, one leg on each bridge, so
# its traffic never shows in the traffic source's counters.
TB_DHCP_NETNS=vfs-dhcp
TB_DHCP_HOST_END=vfsdhcp-br      # on TB_BRIDGE; its peer vfsdhcp0 holds TB_DHCP_IP
TB_DHCP_MGMT_HOST_END=vfsdhcp-mg # on TB_MGMT_BRIDGE; its peer vfsdhcp1 holds TB_DHCP_MGMT_IP
TB_DHCP_IP=198.18.0.2
TB_DHCP_MGMT_IP=198.18.1.1
# MACs without a reservation (a pool with mac: new, a test's NIC with a random MAC) lease from
# .100-.250, above the guests' plan, for dnsmasq's shortest lease: a suite attaches dozens of such
# NICs and detaches them seconds later, and a 12 h lease held the whole range after one suite
# (then the next NIC got "no address available").
TB_DHCP_DYNAMIC_FIRST=100
TB_DHCP_DYNAMIC_LAST=250
TB_DHCP_DYNAMIC_LEASE=2m
TB_DHCP_RESERVED_LEASE=12h
TB_DHCP_CONF="$TB_RUN/dnsmasq.conf"
TB_DHCP_PID="$TB_RUN/dnsmasq.pid"
TB_POOL=vfs-pool
TB_POOL_SIZE="${VFS_POOL_SIZE:-2}"
TB_VF_PREFIX=vfsvf       # pool members (what libvirt hands out): vfsvf0, vfsvf1, ...
TB_VF_BR_PREFIX=vfsvfb   # their peers on the bridge: vfsvfb0, vfsvfb1, ...
TB_GUESTS="${VFS_GUESTS:-vfs-g1:low vfs-g2:low vfs-g3:high vfs-g4:high vfs-u1:}"
TB_GUEST_MEM_MIB="${VFS_GUEST_MEM_MIB:-128}"
TB_MARKER="vfshift-testbed guest"   # <description>: how `down` recognises its own domains
TB_QOS_NS=https://vfshift.dev/ns/qos/1
TB_SINK_PORT=5001     # guest discards what it receives here
TB_SOURCE_PORT=5002   # guest sends zeros to whoever connects here
TB_BOOT_DEADLINE="${VFS_BOOT_DEADLINE:-60}"

TB_VIRTIO_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net)

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (creates bridges, namespaces and libvirt domains); uid is $(id -u)"
}

# Serialises up/down/reset-guest: several test processes may call `up` at once.
take_lock() {
  mkdir -p "$TB_RUN"
  exec 9>"$TB_LOCK"
  flock -w 300 9 || die "could not take $TB_LOCK within 300 s (another testbed script is stuck?)"
}

# guest_entries prints "index name label" per guest; index is 1-based and fixes
# the guest's data address (198.18.0.(10+index)) and MAC (52:54:00:18:00:(10+index)),
# its management address (198.18.1.(10+index)) and MAC (52:54:00:19:00:(10+index)):
# dnsmasq's reservations, keyed by MAC.
guest_entries() {
  local i=0 entry name label
  for entry in $TB_GUESTS; do
    i=$((i + 1))
    name="${entry%%:*}"
    if [[ "$entry" == *:* ]]; then label="${entry#*:}"; else label=""; fi
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "VFS_GUESTS entry '$entry': name must match [A-Za-z0-9_.-]+"
    [[ -z "$label" || "$label" =~ ^[a-z0-9-]+$ ]] || die "VFS_GUESTS entry '$entry': label must match [a-z0-9-]+"
    ((i <= 200)) || die "VFS_GUESTS: at most 200 guests (address plan 198.18.0.11-210)"
    printf '%s %s %s\n' "$i" "$name" "$label"
  done
}
guest_ip() { printf '198.18.0.%d' $((10 + $1)); }
guest_mac() { printf '52:54:00:18:%02x:%02x' $(((10 + $1) / 256)) $(((10 + $1) % 256)); }
guest_mgmt_ip() { printf '198.18.1.%d' $((10 + $1)); }
guest_mgmt_mac() { printf '52:54:00:19:%02x:%02x' $(((10 + $1) / 256)) $(((10 + $1) % 256)); }

kernel_image() { compgen -G "$TB_CACHE/kernel/boot/vmlinuz-*" | head -n1; }

daemons_answer() { timeout 5 "${VIRSH[@]}" list >/dev/null 2>&1; }

domain_exists() { "${VIRSH[@]}" dominfo "$1" >/dev/null 2>&1; }
domain_state() { "${VIRSH[@]}" domstate "$1" 2>/dev/null | head -n1; }

# Names of every domain this test bed defined (by its <description> marker),
# including ones from an earlier VFS_GUESTS that is no longer set.
testbed_domains() {
  local d
  for d in $("${VIRSH[@]}" list --all --name 2>/dev/null); do
    if [[ "$("${VIRSH[@]}" desc "$d" 2>/dev/null)" == *"$TB_MARKER"* ]]; then echo "$d"; fi
  done
}

# Brings pool members up: libvirt restores a member's MAC after a detach but
# leaves its link DOWN, and a down member carries no traffic for the next VM.
pool_members_up() {
  local m
  for m in "$@"; do
    ip link show dev "$m" >/dev/null 2>&1 || die "pool member $m does not exist (is the test bed up?)"
    ip link set dev "$m" up
  done
}
# The members the pool network has (VFS_POOL_SIZE may not be set in the
# caller's environment); by VFS_POOL_SIZE when the network is not defined.
pool_members() {
  local xml i
  if xml="$("${VIRSH[@]}" net-dumpxml --inactive "$TB_POOL" 2>/dev/null)"; then
    sed -n "s/.*<interface dev='\([^']*\)'.*/\1/p" <<<"$xml"
  else
    for ((i = 0; i < TB_POOL_SIZE; i++)); do echo "$TB_VF_PREFIX$i"; done
  fi
}

# --- the guest's domain XML (used by up and reset-guest) ---
bridge_nic_xml() { # mac bridge alias
  cat <<EOF
    <interface type='bridge'>
      <mac address='$1'/>
      <source bridge='$2'/>
      <model type='virtio'/>
      <alias name='$3'/>
    </interface>
EOF
}
# index: the guest's initial NIC, also what reset-guest re-attaches
virtio_nic_xml() { bridge_nic_xml "$(guest_mac "$1")" "$TB_BRIDGE" ua-net0; }
# index: the management NIC, which no swap may change
mgmt_nic_xml() { bridge_nic_xml "$(guest_mgmt_mac "$1")" "$TB_MGMT_BRIDGE" "$TB_MGMT_ALIAS"; }
domain_xml() { # name index label uuid
  local name=$1 idx=$2 label=$3 uuid=$4 qos=""
  # Built here: quotes inside \${x:+...} in a here-document are dropped.
  [[ -z "$label" ]] || qos="    <vfshift:qos xmlns:vfshift=\"$TB_QOS_NS\" class=\"$label\"/>"$'\n'
  cat <<EOF
<domain type='qemu'>
  <name>$name</name>
${uuid:+  <uuid>$uuid</uuid>
}  <description>$TB_MARKER</description>
  <metadata>
$qos  </metadata>
  <memory unit='MiB'>$TB_GUEST_MEM_MIB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$TB_LIB/vmlinuz</kernel>
    <initrd>$TB_LIB/initramfs.cpio.gz</initrd>
    <cmdline>$(guest_cmdline "$name" "$idx")</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
$(virtio_nic_xml "$idx")
$(mgmt_nic_xml "$idx")
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <serial type='file'>
      <source path='$TB_LOG/$name.serial.log' append='off'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
# Part of each guest's command line, so a guest defined with an older image
# is recognised by `up` and redefined. No address is on it: the guest takes
# its addresses by DHCP, as a stock cloud image does.
image_generation() { cat "$TB_LIB/vmlinuz" "$TB_LIB/initramfs.cpio.gz" | md5sum | cut -c1-8; }
guest_cmdline() { # name index
  printf 'console=ttyS0 quiet panic=-1 vfs.name=%s vfs.gen=%s' "$1" "${image_gen:=$(image_generation)}"
}
guest_label_now() { # what the persistent config says
  "${VIRSH[@]}" metadata "$1" "$TB_QOS_NS" --config 2>/dev/null | sed -n 's/.*class="\([^"]*\)".*/\1/p'
}
define_guest() { # name index label [uuid: to redefine an existing domain's config]
  local tmp
  tmp="$(mktemp)"
  domain_xml "$1" "$2" "$3" "${4:-}" >"$tmp"
  "${VIRSH[@]}" define "$tmp" >/dev/null || { rm -f "$tmp"; die "virsh define $1 failed"; }
  rm -f "$tmp"
}

