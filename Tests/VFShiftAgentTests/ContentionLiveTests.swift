import Foundation
import Testing
import VFShiftHost
import VFShiftTestSupport

/// Issue 14 part 4 live: CPU contention, not only traffic, decides which of
/// two high guests holds the one VF. Each guest's vCPU thread is pinned to
/// its own host CPU; a busy loop on one of those CPUs makes that guest's
/// vCPU wait on the run queue (TESTBED.md: 16 → 41 ms/s of wait at 3 MB/s).
@Suite("CPU contention live: the contended guest wins the VF, and the VF follows the busy loop", .serialized,
       .enabled(if: TestBed.enabled))
struct ContentionLiveTests {
  /// The contended guest moves less than the other: traffic alone would give the other the VF.
  static let contendedRate = 2.0e6, otherRate = 2.3e6
  /// Read every 2nd cycle (1 s): a figure within 2 s of the agent's start,
  /// before the 5 s promote sustain can end (the default 65 would take a minute).
  static let contentionEvery = 2
  /// Spinning shells on the contended guest's CPU (from 2: other sessions' work
  /// on the shared 2 CPUs already makes both guests wait). Under a heavier
  /// host load one more is added, up to the last, until the lead is there
  /// (12-02, lead's suite running: 0.47 vs 0.38 with 2, short of 1.1).
  static let busyLoops = [2, 3, 4]
  /// The least lead over the other guest's rank the measured contention must
  /// allow at any weight ((2.0 × c3) / (2.3 × c4)), or the scenario is not there.
  /// The weight is set for half of it: at 1.1 (1.12–1.15 measured with 2 loops,
  /// 12-02 evening) the agent's own reads put the other guest first twice in a row.
  static let leastLead = 1.2
  /// The bed's other guests, parked on the busy CPU: on a 2-CPU host they
  /// would otherwise run beside the uncontended guest and blur the difference
  /// (measured by hand: 0.52 vs 0.32 with them free, 0.51 vs 0.25 parked).
  static let bystanders = ["vfs-g1", "vfs-g2", "vfs-u1"]

  static func policy(weight: Double) -> String {
    """
    {
      name: "bed-contention",
      intervalSeconds: 1,
      smoothing: { halfLifeSeconds: 2 },
      pools: [ { name: "vfs", network: "vfs-pool", dataNIC: { bridge: "vfsbr0" }, maxInUse: 1 } ],
      classes: [
        { name: "high", priority: 100, match: { metadata: "high" }, vf: "eligible", contentionWeight: \(String(format: "%.2f", weight)),
          promote: { bytesPerSecond: 1_000_000, sustainSeconds: 5 }, demote: { bytesPerSecond: 200_000, sustainSeconds: 5 } },
        { name: "low", priority: 10, match: { metadata: "low" }, vf: "never" },
      ],
      antiFlap: { minDwellSeconds: 10, cooldownSeconds: 5, challengerMargin: 0.25, maxSwapsPerCycle: 2, maxSwapsPerVMPerHour: 30 },
    }
    """
  }

  @Test("two high guests, cap 1: the contended one gets the VF on its contention although it moves less; the busy loop moves, the VF follows after the dwell; pings and TCP throughout")
  func contendedGuestWinsTheVF() async throws {
    let (bed, lease) = try leasedBed()
    defer { withExtendedLifetime(lease) {}; try? resetAllGuests(bed) }
    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    let g4 = try #require(bed.guests.first { $0.name == "vfs-g4" })
    let scratch = Scratch("contention-live")

    // Each guest's vCPUs and QEMU main loop on a CPU of its own: the busy loop
    // then hits one guest only.
    defer { for d in ["vfs-g3", "vfs-g4"] + Self.bystanders { try? unpinVCPUs(d) } }
    try pinVCPUs("vfs-g3", cpu: 0)
    try pinVCPUs("vfs-g4", cpu: 1)
    for d in Self.bystanders { try pinVCPUs(d, cpu: 0) }

    let pings = try [g3, g4].map { try PingMonitor(guest: $0.name, ip: $0.ip, scratch: scratch, intervalSeconds: 0.01) }
    defer { pings.forEach { $0.stop() } }
    let tcp3 = try HeldConnection(to: g3.ip, bytesPerSecond: Self.contendedRate, log: scratch.file("tcp-vfs-g3.log"))
    defer { tcp3.stop() }
    let tcp4 = try HeldConnection(to: g4.ip, bytesPerSecond: Self.otherRate, log: scratch.file("tcp-vfs-g4.log"))
    defer { tcp4.stop() }
    var busy = try BusyLoop(cpu: 0, count: Self.busyLoops[0])
    defer { busy.stop() }

    // The figures the weight is computed from, read as the agent reads them.
    var c3 = 0.0, c4 = 1.0, bestLead = 0.0, loops = 0
    for n in Self.busyLoops where bestLead < Self.leastLead {
      if n != Self.busyLoops[0] { busy.stop(); busy = try BusyLoop(cpu: 0, count: n) }
      loops = n
      let measured = try await measureContention(["vfs-g3", "vfs-g4"], seconds: 6)
      c3 = try #require(measured["vfs-g3"]); c4 = try #require(measured["vfs-g4"])
      // rank = rate × (1 + w × c); as w grows the lead tends to (r3 × c3) / (r4 × c4).
      bestLead = Self.contendedRate * c3 / (Self.otherRate * c4)
      print(String(format: "measured over 6 s, %d busy loops on CPU 0 (vfs-g3): vfs-g3 %.3f at %.1f MB/s, vfs-g4 %.3f at %.1f MB/s;"
                   + " the most contention can lead by (w -> infinity) %.2f, needed >= %.2f",
                   n, c3, Self.contendedRate / 1e6, c4, Self.otherRate / 1e6, bestLead, Self.leastLead))
    }
    try #require(bestLead >= Self.leastLead, "vfs-g3's contention \(c3) is not enough over vfs-g4's \(c4) for a weight to flip the order")
    // The weight for half the best lead: robust to noise in either figure, not unbounded.
    let lead = (1 + bestLead) / 2
    let weight = min(100, (lead * Self.otherRate - Self.contendedRate) / (Self.contendedRate * c3 - lead * Self.otherRate * c4))
    print(String(format: "contentionWeight %.2f: ranks vfs-g3 %.2f, vfs-g4 %.2f (MB/s × (1 + w × c))", weight,
                 Self.contendedRate / 1e6 * (1 + weight * c3), Self.otherRate / 1e6 * (1 + weight * c4)))

    try Self.policy(weight: weight).write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
    let agent = try AgentProcess(scratch: scratch, policy: scratch.file("p.json"),
                                 arguments: ["--contention-every", "\(Self.contentionEvery)"])
    defer { _ = agent.stop() }
    try await agent.waitFor("agent start", seconds: 20) { !agent.events("start").isEmpty }

    try await agent.waitFor("a first promotion", seconds: 60) { agent.swaps.contains { $0.direction == "promote" } }
    #expect(agent.swaps.first { $0.direction == "promote" }.map { $0 == ("promote", "vfs-g3", "done") } == true,
            "the first promotion is the contended vfs-g3's: \(agent.swaps)")
    let promote = try #require(agent.events("decision").first { $0["decision"] as? String == "promote" })
    #expect(promote["vm"] as? String == "vfs-g3")
    let reason = promote["reason"] as? String ?? ""
    print("decision: promote \(promote["vm"] as? String ?? "?"): \(reason)")
    #expect(reason.contains("vfs-g3 ranked by contention"), "the reason names vfs-g3's contention: \(reason)")
    var snapshots = [("vfs-g3 on the VF", try await statusRows(scratch, onVF: "vfs-g3"))]

    // The busy loop moves to vfs-g4's CPU: after vfs-g3's dwell the VF follows.
    busy.stop()
    busy = try BusyLoop(cpu: 1, count: loops)
    for d in Self.bystanders { try pinVCPUs(d, cpu: 1) }
    try await agent.waitFor("vfs-g4 promoted", seconds: 90) { agent.swaps.contains { $0 == ("promote", "vfs-g4", "done") } }
    #expect(agent.swaps.contains { $0 == ("demote", "vfs-g3", "done") })
    let moved = try #require(agent.events("decision").first { $0["decision"] as? String == "promote" && $0["vm"] as? String == "vfs-g4" })
    print("decision: promote vfs-g4: \(moved["reason"] as? String ?? "")")
    // The dwell runs from the decision (the engine's clock), not from the swap's end the test saw.
    let dwellSeen = (unixTime(moved["ts"]) ?? 0) - (unixTime(promote["ts"]) ?? .infinity)
    #expect(dwellSeen >= 10 - 1, "vfs-g4's promotion \(dwellSeen) s after vfs-g3's: not before vfs-g3's 10 s dwell")
    snapshots.append(("vfs-g4 on the VF", try await statusRows(scratch, onVF: "vfs-g4")))
    busy.stop()
    #expect(agent.stop() == 0, "SIGTERM is a clean exit")

    // The connections held throughout; each guest still answers at its leased address.
    let r3 = tcp3.result(), r4 = tcp4.result()
    #expect(r3.error == nil && tcp3.isRunning, "vfs-g3's TCP connection survived: \(r3.error ?? "")")
    #expect(r4.error == nil && tcp4.isRunning, "vfs-g4's TCP connection survived: \(r4.error ?? "")")
    tcp3.stop(); tcp4.stop()
    for g in [g3, g4] {
      #expect(TestBed.ping(g.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2).received > 0, "\(g.name) answers at \(g.ip)")
      let inv = try liveInventory(g.name)
      #expect(inv.nics.count == 1 && inv.journal == nil, "\(g.name): one data NIC, no journal")
    }

    for (when, rows) in snapshots {
      print("status, \(when):")
      for (vm, row) in rows.sorted(by: { $0.key < $1.key }) {
        print(String(format: "  %@  placement %@  contention %@  traffic %.2f MB/s", vm, row["placement"] as? String ?? "-",
                     (row["contention"] as? Double).map { String(format: "%.3f", $0) } ?? "-", (row["bytesPerSecond"] as? Double ?? 0) / 1e6))
      }
    }
    print("swap                 seconds  pings sent  lost  longest TCP gap (s)")
    for swap in agent.events("swap") {
      guard let vm = swap["vm"] as? String, let end = unixTime(swap["ts"]), let seconds = swap["seconds"] as? Double,
            let monitor = pings.first(where: { $0.guest == vm }) else { continue }
      let c = pingCounts(monitor.path, from: end - seconds - 0.5, to: end + 1)
      let gap = (vm == "vfs-g3" ? r3 : r4).longestGap(from: end - seconds - 0.5, to: end + 1)
      print("\((swap["direction"] as? String ?? "") + " " + vm)".padding(toLength: 20, withPad: " ", startingAt: 0)
            + String(format: "%8.2f %11d %5d %10.3f", seconds, c.sent, c.lost, gap))
    }
    print(String(format: "TCP whole run: vfs-g3 longest gap %.3f s, vfs-g4 %.3f s; no reset", r3.longestGap(), r4.longestGap()))
  }

  /// `vfshift status --json` rows by VM, as an operator asks (the control socket),
  /// once they show `onVF` on its VF: the swap's log line comes before the cycle
  /// that writes the status.
  func statusRows(_ scratch: Scratch, onVF: String) async throws -> [String: [String: Any]] {
    var rows: [String: [String: Any]] = [:]
    try await TestBed.waitUntil(deadlineSeconds: 10, poll: 0.25, "status over the control socket") {
      guard let r = try? TestBed.execute([vfshiftBinary, "status", "--json", "--status-file", scratch.file("status.json")]), r.status == 0,
            let s = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
            let vms = s["vms"] as? [[String: Any]] else { return false }
      rows = Dictionary(vms.compactMap { v in (v["vm"] as? String).map { ($0, v) } }, uniquingKeysWith: { a, _ in a })
      return (rows[onVF]?["placement"] as? String)?.hasPrefix("vf:") == true
    }
    return rows
  }
}

/// Each domain's contention over `seconds`, from its QEMU's vCPU threads
/// (the pid file libvirt writes, the threads' names, their schedstat).
func measureContention(_ domains: [String], seconds: Double) async throws -> [String: Double] {
  var threads: [String: (Int32, [Int32])] = [:]
  for d in domains {
    let pid = try #require(qemuPID(domain: d), "\(d): no pid in /run/libvirt/qemu/\(d).pid")
    threads[d] = (pid, try vcpuThreads(pid: pid))
  }
  var buffer: [UInt8] = []
  let before = threads.mapValues { schedTimes(pid: $0.0, threads: $0.1, buffer: &buffer) }
  try await Task.sleep(for: .seconds(seconds))
  var out: [String: Double] = [:]
  for (d, t) in threads {
    if let b = before[d] ?? nil, let a = schedTimes(pid: t.0, threads: t.1, buffer: &buffer) { out[d] = contention(from: b, to: a) }
  }
  return out
}

/// Every vCPU of `domain` and its emulator threads (the QEMU main loop that
/// moves the virtio-net traffic) to one host CPU, `virsh vcpupin/emulatorpin --live`.
func pinVCPUs(_ domain: String, cpu: Int) throws { try pin(domain, to: "\(cpu)") }

/// Every vCPU and emulator thread back on every host CPU.
func unpinVCPUs(_ domain: String) throws { try pin(domain, to: "0-\(ProcessInfo.processInfo.activeProcessorCount - 1)") }

private func pin(_ domain: String, to cpus: String) throws {
  let count = Int(try virsh("vcpucount", domain, "--live", "--active").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 1
  for v in 0..<count { _ = try virsh("vcpupin", domain, "\(v)", cpus, "--live") }
  _ = try virsh("emulatorpin", domain, cpus, "--live")
}

/// `count` shells spinning on one CPU until stopped.
final class BusyLoop {
  var processes: [Process] = []
  init(cpu: Int, count: Int = 1) throws {
    for _ in 0..<count {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      p.arguments = ["taskset", "-c", "\(cpu)", "sh", "-c", "while :; do :; done"]
      processes.append(p)
      try p.run()
    }
  }
  func stop() {
    for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
  }
  deinit { stop() }
}

/// One paced TCP connection from the namespace to a guest's sink, never
/// reconnected: a reset or stall across a swap is seen, not papered over.
/// It logs each stall over 50 ms ("gap START END") and an error ("error …").
final class HeldConnection {
  let process = Process()
  let log: String
  static let script = """
    import socket, sys, time
    ip, rate, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    out = open(path, 'a', buffering=1)
    chunk = b'\\0' * 8192
    try:
        s = socket.create_connection((ip, 5001), timeout=10)
        s.settimeout(30)
        out.write('connected %f\\n' % time.time())
        t0, sent, last = time.monotonic(), 0, time.time()
        while True:
            s.sendall(chunk)
            now = time.time()
            if now - last > 0.05:
                out.write('gap %f %f\\n' % (last, now))
            last = now
            sent += len(chunk)
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
                last = time.time()
    except Exception as e:
        out.write('error %r\\n' % e)
    """

  init(to ip: String, bytesPerSecond: Double, log: String, namespace: String = "vfs-src") throws {
    self.log = log
    FileManager.default.createFile(atPath: log, contents: nil)
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["ip", "netns", "exec", namespace, "python3", "-c", HeldConnection.script, ip, "\(bytesPerSecond)", log]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
  }

  var isRunning: Bool { process.isRunning }

  struct Result {
    var error: String?
    var gaps: [(start: Double, end: Double)]
    func longestGap(from: Double = 0, to: Double = .infinity) -> Double {
      gaps.filter { $0.end >= from && $0.start <= to }.map { $0.end - $0.start }.max() ?? 0
    }
  }

  func result() -> Result {
    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    var r = Result(error: nil, gaps: [])
    for line in text.split(separator: "\n") {
      let f = line.split(separator: " ")
      if f.first == "error" { r.error = String(line) }
      if f.first == "gap", f.count == 3, let a = Double(f[1]), let b = Double(f[2]) { r.gaps.append((a, b)) }
    }
    if !text.contains("connected") && r.error == nil { r.error = "never connected" }
    return r
  }

  func stop() { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
  deinit { stop() }
}

/// Replies and losses between two Unix times in a `ping -D` log, by sequence
/// number: at 10 ms a late reply is not a lost one, as `-O`'s "no answer yet" would count it.
func pingCounts(_ path: String, from: Double, to: Double) -> (sent: Int, lost: Int) {
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return (0, 0) }
  var seqs = Set<Int>()
  for line in text.split(separator: "\n") where line.hasPrefix("[") && line.contains("bytes from") {
    guard let close = line.firstIndex(of: "]"), let t = Double(line[line.index(after: line.startIndex)..<close]), t >= from, t <= to,
          let r = line.range(of: "icmp_seq=") else { continue }
    if let seq = Int(line[r.upperBound...].prefix { $0.isNumber }) { seqs.insert(seq) }
  }
  guard let lo = seqs.min(), let hi = seqs.max() else { return (0, 0) }
  return (hi - lo + 1, hi - lo + 1 - seqs.count)
}
