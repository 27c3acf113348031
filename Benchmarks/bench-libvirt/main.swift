// bench-libvirt: on the test bed (deploy/testbed/up), side by side in one run:
//  1. the inventory each cycle: kept from events (a snapshot; one domain read
//     per event) vs re-reading every running domain's live XML;
//  2. the counters each cycle: one /proc/net/dev read for all NICs
//     (VFShiftHost's ProcNetDevReader) vs libvirt's virDomainInterfaceStats
//     once per NIC.
// Release build: swift run -c release --scratch-path .build-NAME bench-libvirt [--uri URI] [--cycles N]
// The last line of output is one JSON object with the figures.

import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

func fail(_ message: String) -> Never {
  FileHandle.standardError.write(Data("bench-libvirt: error: \(message)\n".utf8))
  exit(1)
}

var uri = "qemu:///system"
var cycles = 200
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
  switch a {
  case "--uri":
    guard let v = args.popFirst() else { fail("--uri needs a value") }
    uri = v
  case "--cycles":
    guard let v = args.popFirst().flatMap(Int.init), v > 0 else { fail("--cycles needs a whole number > 0") }
    cycles = v
  case "-h", "--help":
    print("usage: bench-libvirt [--uri URI] [--cycles N]   (on the test bed: deploy/testbed/up first)")
    exit(0)
  default: fail("unknown argument '\(a)'")
  }
}

/// Median and p90 of `body`'s wall time in microseconds over `cycles` runs (after 10 warm-up runs).
func measure(_ cycles: Int, _ body: () throws -> Void) rethrows -> (median: Double, p90: Double) {
  for _ in 0..<10 { try body() }
  var samples: [Double] = []
  samples.reserveCapacity(cycles)
  let clock = ContinuousClock()
  for _ in 0..<cycles {
    let d = try clock.measure { try body() }
    let (s, atto) = d.components
    samples.append(Double(s) * 1e6 + Double(atto) / 1e12)
  }
  samples.sort()
  return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 9 / 10)])
}

func format(_ us: Double) -> String { us >= 1000 ? String(format: "%.2f ms", us / 1000) : String(format: "%.1f µs", us) }

let connection: LibvirtConnection
do { connection = try LibvirtConnection(uri: uri) } catch { fail("\(error) (is the test bed up? deploy/testbed/up)") }
let domains: [DomainInfo]
do { domains = try connection.runningDomains() } catch { fail("\(error)") }
guard !domains.isEmpty else { fail("no running domains on \(uri): bring the test bed up first (deploy/testbed/up)") }

let inventory = Inventory(connection: connection)
do { try await inventory.start() } catch { fail("\(error)") }
let snapshot = inventory.snapshot()
let nics = snapshot.flatMap { d in d.nics.compactMap { n in n.hostDevice.map { (uuid: d.uuid, device: $0, kind: n.hostDeviceKind ?? .tap) } } }
guard !nics.isEmpty else { fail("the running domains have no NIC with a host device") }
print("bench-libvirt: \(snapshot.count) running domains, \(nics.count) NICs with a host device, \(cycles) cycles each, \(uri)")

// 1. Inventory.
let steady = try measure(cycles) { precondition(!inventory.snapshot().isEmpty) }
let perEvent = try measure(cycles) { try inventory.refresh(uuid: snapshot[0].uuid) }
let fullReRead = try measure(cycles) {
  var all: [DomainInventory] = []
  for d in try connection.runningDomains() { all.append(try parseDomainXML(try connection.liveXML(uuid: d.uuid))) }
  precondition(all.count == snapshot.count)
}

// 2. Counters.
var reader = ProcNetDevReader()
var sink: UInt64 = 0
let procRead = try measure(cycles) {
  let s = try reader.read()
  for n in nics { if let c = s[n.device] { sink &+= n.kind.vmCounters(c).rxBytes } }
}
let libvirtStats = try measure(cycles) {
  for n in nics { sink &+= try connection.interfaceStats(uuid: n.uuid, device: n.device).rxBytes }
}

// The two sources must agree on what they count (VM's view), or the comparison is moot.
let host = try reader.read()
var agreement: [String] = []
for n in nics {
  let viaLibvirt = try connection.interfaceStats(uuid: n.uuid, device: n.device)
  guard let h = host[n.device] else { continue }
  let viaProc = n.kind.vmCounters(h)
  agreement.append("\(n.device)(\(n.kind.rawValue)) rx \(viaProc.rxBytes)/\(viaLibvirt.rxBytes) tx \(viaProc.txBytes)/\(viaLibvirt.txBytes)")
}

func row(_ what: String, _ m: (median: Double, p90: Double), _ note: String) {
  print("  " + what.padding(toLength: 58, withPad: " ", startingAt: 0)
        + format(m.median).padding(toLength: 12, withPad: " ", startingAt: 0)
        + "p90 " + format(m.p90).padding(toLength: 12, withPad: " ", startingAt: 0) + note)
}
print("inventory per cycle (median):")
row("from events, no event this cycle (snapshot)", steady, "")
row("from events, one event (re-read one domain)", perEvent, "")
row("re-read every domain's live XML (\(snapshot.count) domains)", fullReRead,
    String(format: "%.0fx a quiet cycle, %.1fx an event", fullReRead.median / steady.median, fullReRead.median / perEvent.median))
print("counters per cycle (median), \(nics.count) NICs:")
row("one /proc/net/dev read (VFShiftHost ProcNetDevReader)", procRead, "")
row("virDomainInterfaceStats per NIC", libvirtStats, String(format: "%.1fx the /proc read", libvirtStats.median / procRead.median))
print("counters, VM's view, /proc vs libvirt (read moments apart): " + agreement.joined(separator: "; "))
_ = sink

let json: [String: Any] = [
  "bench": "libvirt", "uri": uri, "domains": snapshot.count, "nics": nics.count, "cycles": cycles,
  "inventory_snapshot_us": steady.median, "inventory_one_domain_refresh_us": perEvent.median,
  "inventory_full_reread_us": fullReRead.median,
  "full_reread_vs_snapshot_ratio": fullReRead.median / steady.median,
  "full_reread_vs_event_refresh_ratio": fullReRead.median / perEvent.median,
  "counters_procnetdev_us": procRead.median, "counters_libvirt_interface_stats_us": libvirtStats.median,
  "libvirt_stats_vs_procnetdev_ratio": libvirtStats.median / procRead.median,
]
let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes])
print(String(decoding: data, as: UTF8.self))
