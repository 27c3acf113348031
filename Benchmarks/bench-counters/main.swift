// bench-counters: the cost of one observation cycle at N interfaces (default
// 4,000), side by side in one run:
//
//   vfshift ProcNetDevReader           vs  bare /proc/net/dev read (open, read to EOF, close)
//   vfshift NetlinkStatsReader(.getStats) vs  bare RTM_GETSTATS dump (recv until NLMSG_DONE)
//   vfshift NetlinkStatsReader(.getLink)  vs  bare RTM_GETLINK dump
//   psutil.net_io_counters(pernic=True), node_exporter's netdev collector
//   libvirt's per-interface way (fopen /proc/net/dev, fgets until the name), once per VM
//
// It makes its own namespace with N/2 veth pairs, enters it on the main thread
// (so /proc/net/dev, netlink and the child processes all see only those
// interfaces), and deletes it at the end, also on failure.
//
//   swift run --scratch-path .build-host -c release bench-counters [--interfaces N] [--cycles N] [--vms N]
//
// The last line of output is one JSON object with every figure. Only the
// reader-to-floor ratios have "floor" in their key (`*_vs_floor`); the floors'
// own times are `*_bare_*_ms`.

import Foundation
#if canImport(Glibc)
import Glibc
#endif
import VFShiftCore
import VFShiftHost
import BenchSupport

// MARK: - Arguments

var interfaceCount = 4000
var cycles = 200
var vmCount = 1000
do {
  var args = CommandLine.arguments.dropFirst()
  while let flag = args.popFirst() {
    guard let value = args.popFirst().flatMap(Int.init), value > 0 else {
      FileHandle.standardError.write("error: \(flag) needs a positive number\nusage: bench-counters [--interfaces N] [--cycles N] [--vms N]\n".data(using: .utf8)!)
      exit(64)
    }
    switch flag {
    case "--interfaces": interfaceCount = value
    case "--cycles": cycles = value
    case "--vms": vmCount = value
    default:
      FileHandle.standardError.write("error: unknown option \(flag)\nusage: bench-counters [--interfaces N] [--cycles N] [--vms N]\n".data(using: .utf8)!)
      exit(64)
    }
  }
}


// MARK: - Timing

struct Figure {
  var median: Double
  var min: Double
}

/// Times every body once per round, `rounds` rounds, in rotating order after
/// `warmup` untimed rounds. Interleaving puts a reader and its floor under the
/// same machine noise (other builds share these 2 cores), so their ratio holds
/// even when the absolute times drift.
func measureInterleaved(rounds: Int, warmup: Int = 3, _ bodies: [(String, () throws -> Int)]) throws -> [Figure] {
  var sink = 0
  for _ in 0..<warmup { for (_, body) in bodies { sink &+= try body() } }
  var times = [[Double]](repeating: [], count: bodies.count)
  let clock = ContinuousClock()
  for round in 0..<rounds {
    for k in 0..<bodies.count {
      let i = (k + round) % bodies.count
      let start = clock.now
      sink &+= try bodies[i].1()
      times[i].append(milliseconds(clock.now - start))
    }
  }
  if sink == Int.min { print("") }  // keeps `sink` alive
  return bodies.indices.map { i in
    let sorted = times[i].sorted()
    let f = Figure(median: sorted[sorted.count / 2], min: sorted[0])
    note("  " + pad(bodies[i].0, 34) + String(format: " median %9.3f ms  min %9.3f ms", f.median, f.min))
    return f
  }
}

// MARK: - Floors: the bare syscalls with no parsing or decoding

let floorBuffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)

/// open + read to EOF + close, into a 1 MiB buffer: what any /proc reader pays.
@MainActor func bareProcRead(_ path: String) throws -> Int {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { throw BenchError(description: "open \(path): errno \(errno)") }
  defer { close(fd) }
  var total = 0
  while true {
    let n = read(fd, floorBuffer, 1 << 20)
    if n < 0 { if errno == EINTR { continue }; throw BenchError(description: "read \(path): errno \(errno)") }
    if n == 0 { return total }
    total += n
  }
}

// The netlink floors are VFShiftHost's BareNetlinkDump (bench-agent uses the same one).

// MARK: - libvirt's per-interface lookup


// MARK: - Tools users have

let psutilScript = """
import json, sys, time
try:
    import psutil
except ImportError:
    print(json.dumps({"error": "psutil not installed (pip install psutil)"})); sys.exit(0)
n = int(sys.argv[1])
for _ in range(3): psutil.net_io_counters(pernic=True)
ts = []
for _ in range(n):
    t = time.perf_counter(); d = psutil.net_io_counters(pernic=True); ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
print(json.dumps({"median": ts[len(ts) // 2], "min": ts[0], "count": len(d), "version": psutil.__version__}))
"""

let scrapeScript = """
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 15
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", "/metrics"); r = c.getresponse(); body = r.read(); break
    except OSError:
        if time.time() > deadline: print(json.dumps({"error": "node_exporter did not answer within 15 s"})); sys.exit(0)
        time.sleep(0.05)
ts = []
for _ in range(n):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30); c.request("GET", "/metrics"); body = c.getresponse().read(); c.close()
    ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
lines = [l for l in body.decode().splitlines() if l.startswith("node_network_receive_bytes_total{")]
print(json.dumps({"median": ts[len(ts) // 2], "min": ts[0], "count": len(lines)}))
"""

@MainActor func pythonFigure(_ namespace: String, _ script: String, _ args: [String]) -> [String: Any] {
  do {
    let out = try run(["ip", "netns", "exec", namespace, "python3", "-c", script] + args)
    let last = out.split(separator: "\n").last.map(String.init) ?? ""
    return (try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? ["error": "no JSON from python: \(out)"]
  } catch {
    return ["error": "\(error)"]
  }
}

// MARK: - The run

let namespaceName = "vfs-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
var result: [String: Any] = ["interfaces": interfaceCount, "cycles": cycles, "vms": vmCount]
var nodeExporter: Process? = nil

@MainActor func deleteNamespace() {
  if let p = nodeExporter, p.isRunning { p.terminate(); p.waitUntilExit() }
  _ = try? run(["ip", "netns", "del", namespaceName])
}

@MainActor func benchmark() throws {
  note("bench-counters: \(interfaceCount) interfaces in namespace \(namespaceName)")
  try run(["ip", "netns", "add", namespaceName])
  let batch = FileManager.default.temporaryDirectory.appendingPathComponent("\(namespaceName).batch")
  var lines = ["link set lo up"]
  for i in 0..<(interfaceCount / 2) { lines.append("link add vfa\(i) type veth peer name vfb\(i)") }
  // An odd count: one more veth pair, then 1 extra interface seen (lo is there too).
  if interfaceCount % 2 == 1 { lines.append("link add vfa\(interfaceCount / 2) type veth peer name vfb\(interfaceCount / 2)") }
  try lines.joined(separator: "\n").write(to: batch, atomically: true, encoding: .utf8)
  defer { try? FileManager.default.removeItem(at: batch) }
  let created = ContinuousClock.now
  try run(["ip", "-n", namespaceName, "-batch", batch.path])
  note(String(format: "  created in %.2f s", milliseconds(ContinuousClock.now - created) / 1e3))

  try NetworkNamespace(name: namespaceName).enterForCurrentThread()

  var proc = ProcNetDevReader()
  let getStats = try NetlinkStatsReader(request: .getStats)
  let getLink = try NetlinkStatsReader(request: .getLink)
  let bare = try BareNetlinkDump()

  let a = try proc.read(), b = try getStats.read(), c = try getLink.read()
  guard a.count >= interfaceCount else { throw BenchError(description: "/proc/net/dev shows \(a.count) interfaces, expected \(interfaceCount)+") }
  let agree = a == b && b == c
  note("  interfaces seen: proc \(a.count), RTM_GETSTATS \(b.count), RTM_GETLINK \(c.count); readers agree: \(agree)")
  result["interfaces_seen"] = a.count
  result["readers_agree"] = agree

  note("timing \(cycles) rounds, each reader next to its floor (median, min):")
  // Each reader interleaved with its own floor only: a 17 ms RTM_GETLINK dump
  // between two RTM_GETSTATS dumps would evict what they share in the caches.
  let procPair = try measureInterleaved(rounds: cycles, [
    ("bare /proc/net/dev read", { try bareProcRead("/proc/net/dev") }),
    ("vfshift ProcNetDevReader", { try proc.read().count }),
  ])
  let statsPair = try measureInterleaved(rounds: cycles, [
    ("bare RTM_GETSTATS dump", { try bare.dump(.getStats) }),
    ("vfshift netlink (RTM_GETSTATS)", { try getStats.read().count }),
  ])
  let linkPair = try measureInterleaved(rounds: max(10, cycles / 4), [
    ("bare RTM_GETLINK dump", { try bare.dump(.getLink) }),
    ("vfshift netlink (RTM_GETLINK)", { try getLink.read().count }),
  ])
  let (procFloor, procReader, statsFloor, statsReader, linkFloor, linkReader) =
    (procPair[0], procPair[1], statsPair[0], statsPair[1], linkPair[0], linkPair[1])

  // libvirt's way, once per VM: VM NICs spread over the whole file.
  let names = a.names
  let stride = max(1, names.count / vmCount)
  let vmNames = (0..<vmCount).map { names[($0 * stride) % names.count] }
  var found = 0
  let perVMStart = ContinuousClock.now
  for name in vmNames where perInterfaceLookup(name) != nil { found += 1 }
  let perVMAll = milliseconds(ContinuousClock.now - perVMStart)
  guard found == vmCount else { throw BenchError(description: "per-interface lookup found \(found) of \(vmCount)") }
  note("  " + pad("per-interface lookup (libvirt)", 34) + String(format: " %9.1f ms for %d VMs (%.3f ms each)", perVMAll, vmCount, perVMAll / Double(vmCount)))

  let psutil = pythonFigure(namespaceName, psutilScript, [String(max(10, cycles / 4))])
  note("  psutil.net_io_counters(pernic=True): \(psutil)")

  var nodeFigure: [String: Any] = ["error": "prometheus-node-exporter not installed (apt-get install prometheus-node-exporter)"]
  let exporterPath = "/usr/bin/prometheus-node-exporter"
  if FileManager.default.isExecutableFile(atPath: exporterPath) {
    let port = 19100 + Int(getpid() % 500)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["ip", "netns", "exec", namespaceName, exporterPath, "--collector.disable-defaults", "--collector.netdev",
                   "--web.listen-address=127.0.0.1:\(port)", "--log.level=error"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    nodeExporter = p
    nodeFigure = pythonFigure(namespaceName, scrapeScript, [String(port), String(max(10, cycles / 4))])
    p.terminate(); p.waitUntilExit()
    nodeExporter = nil
  }
  note("  node_exporter netdev scrape: \(nodeFigure)")

  func ms(_ d: [String: Any]) -> Double? { d["median"] as? Double }
  let psutilMS = ms(psutil), nodeMS = ms(nodeFigure)
  let fastest = statsReader.median <= linkReader.median ? "getStats" : "getLink"

  result["proc_bare_read_ms"] = procFloor.median
  result["proc_reader_ms"] = procReader.median
  result["proc_reader_vs_floor"] = procReader.median / procFloor.median
  result["getstats_bare_dump_ms"] = statsFloor.median
  result["netlink_reader_ms"] = statsReader.median
  result["netlink_reader_vs_floor"] = statsReader.median / statsFloor.median
  result["getlink_bare_dump_ms"] = linkFloor.median
  result["getlink_reader_ms"] = linkReader.median
  result["getlink_reader_vs_floor"] = linkReader.median / linkFloor.median
  result["netlink_min_ms"] = statsReader.min
  result["proc_reader_min_ms"] = procReader.min
  result["per_interface_lookup_ms"] = perVMAll / Double(vmCount)
  result["per_interface_all_vms_ms"] = perVMAll
  result["psutil_ms"] = psutilMS ?? NSNull()
  result["psutil_interfaces"] = psutil["count"] ?? NSNull()
  result["node_exporter_ms"] = nodeMS ?? NSNull()
  result["node_exporter_interfaces"] = nodeFigure["count"] ?? NSNull()
  result["netlink_speedup_vs_bare_proc"] = procFloor.median / statsReader.median
  result["netlink_speedup_vs_psutil"] = psutilMS.map { $0 / statsReader.median } ?? NSNull()
  result["netlink_speedup_vs_node_exporter"] = nodeMS.map { $0 / statsReader.median } ?? NSNull()
  result["netlink_speedup_vs_per_interface_all_vms"] = perVMAll / statsReader.median
  result["faster_netlink_request"] = fastest
  result["default_source"] = "\(CounterSource.preferred)"

  // The table.
  func row(_ what: String, _ v: Double?, _ ratio: String) {
    print(pad(what, 44) + " " + pad(v.map { String(format: "%.3f ms", $0) } ?? "n/a", 12, right: true) + "  " + ratio)
  }
  func x(_ v: Double?) -> String { v.map { String(format: "%.2fx", $0) } ?? "n/a" }
  print("")
  print("one cycle at \(a.count) interfaces, median of \(cycles) interleaved rounds (release build)")
  print(pad("what", 44) + " " + pad("time", 12, right: true) + "  ratio")
  row("bare /proc/net/dev read (floor)", procFloor.median, "")
  row("vfshift ProcNetDevReader", procReader.median, "\(x(procReader.median / procFloor.median)) its floor (target <= 1.20x)")
  row("bare RTM_GETSTATS dump (floor)", statsFloor.median, "")
  row("vfshift NetlinkStatsReader .getStats", statsReader.median, "\(x(statsReader.median / statsFloor.median)) its floor (target <= 1.20x)")
  row("bare RTM_GETLINK dump (floor)", linkFloor.median, "")
  row("vfshift NetlinkStatsReader .getLink", linkReader.median, "\(x(linkReader.median / linkFloor.median)) its floor")
  row("psutil net_io_counters(pernic=True)", psutilMS, "netlink \(x(psutilMS.map { $0 / statsReader.median })) faster (target >= 10x)")
  row("node_exporter netdev scrape", nodeMS, "netlink \(x(nodeMS.map { $0 / statsReader.median })) faster")
  row("per-interface lookup, one VM", perVMAll / Double(vmCount), "")
  row("per-interface lookup, \(vmCount) VMs", perVMAll, "netlink \(x(perVMAll / statsReader.median)) faster (target >= 1000x)")
  row("netlink reader vs bare /proc read", statsReader.median, "netlink \(x(procFloor.median / statsReader.median)) faster (target >= 2x)")
  print("faster netlink request: \(fastest); default source: \(CounterSource.preferred)")
}

var failed = false
do {
  try benchmark()
} catch {
  note("error: \(error)")
  result["error"] = "\(error)"
  failed = true
}
deleteNamespace()
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
exit(failed ? 1 : 0)
