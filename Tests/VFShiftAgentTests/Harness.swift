import Foundation
import VFShiftTestSupport
import VFShiftLibvirt

/// The built `vfshift` binary: the tests run the agent as operators do, as a
/// process, so signals, crashes and restarts are real.
let vfshiftBinary: String = {
  // The binary built with these tests (any --scratch-path), before a shared .build.
  if let path = ProcessInfo.processInfo.environment["VFSHIFT_BINARY"], !path.isEmpty { return path }
  if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    if dir.lastPathComponent == "MacOS" || dir.path.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    let sibling = dir.appendingPathComponent("vfshift").path
    if FileManager.default.isExecutableFile(atPath: sibling) { return sibling }
  }
  for dir in [".build/debug", ".build/x86_64-unknown-linux-gnu/debug", ".build/release"] {
    let path = TestBed.packageRoot.appendingPathComponent("\(dir)/vfshift").path
    if FileManager.default.isExecutableFile(atPath: path) { return path }
  }
  return TestBed.packageRoot.appendingPathComponent(".build/debug/vfshift").path
}()

/// `vfshift ARGS` as an operator runs it: exit status and both outputs
/// (drained together, so a child filling one pipe never stalls).
func vfshiftCLI(_ args: [String]) throws -> TestBed.Output { try TestBed.execute([vfshiftBinary] + args) }

/// A scratch directory per test, removed at the end.
final class Scratch {
  let path: String
  init(_ name: String) {
    path = NSTemporaryDirectory() + "vfshift-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  func file(_ name: String) -> String { "\(path)/\(name)" }
  deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The live test policy: the paper's shape on the bed's pool of 2 stand-in
/// VFs, capped at 1; thresholds a TCG guest can reach.
func bedPolicy(name: String = "bed-paper", cap: Int = 1, highVF: String = "eligible") -> String {
  """
  {
    name: "\(name)",
    intervalSeconds: 1,
    smoothing: { halfLifeSeconds: 2 },
    pools: [ { name: "vfs", network: "vfs-pool", dataNIC: { bridge: "vfsbr0" }, maxInUse: \(cap) } ],
    classes: [
      { name: "high", priority: 100, match: { metadata: "high" }, vf: "\(highVF)",
        \(highVF == "eligible" ? "promote: { bytesPerSecond: 2_000_000, sustainSeconds: 3 }, demote: { bytesPerSecond: 200_000, sustainSeconds: 5 }," : "")
      },
      { name: "low", priority: 10, match: { metadata: "low" }, vf: "never" },
    ],
    antiFlap: { minDwellSeconds: 10, cooldownSeconds: 5, challengerMargin: 0.25, maxSwapsPerCycle: 2, maxSwapsPerVMPerHour: 30 },
  }
  """
}

/// One `vfshift run` process with its log.
final class AgentProcess {
  let process = Process()
  let logPath: String
  let scratch: Scratch

  init(scratch: Scratch, policy: String, arguments: [String] = [], environment: [String: String] = [:], logName: String = "agent.log") throws {
    self.scratch = scratch
    logPath = scratch.file(logName)
    FileManager.default.createFile(atPath: logPath, contents: nil)
    process.executableURL = URL(fileURLWithPath: vfshiftBinary)
    process.arguments = ["run", "--policy", policy, "--listen", "127.0.0.1:0", "--status-file", scratch.file("status.json"),
                         "--lock-file", scratch.file("agent.lock")] + arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    process.standardError = log
    process.standardOutput = log
    try process.run()
  }

  var events: [[String: Any]] {
    guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
  }

  func events(_ kind: String) -> [[String: Any]] { events.filter { $0["event"] as? String == kind } }

  /// Swaps that finished, as (direction, vm, outcome).
  var swaps: [(direction: String, vm: String, outcome: String)] {
    events("swap").map { ($0["direction"] as? String ?? "", $0["vm"] as? String ?? "", $0["outcome"] as? String ?? "") }
  }

  /// Promote/demote decisions, as the engine made them: (t, verb, vm).
  var decisions: [(t: Double, verb: String, vm: String)] {
    events("decision").compactMap { e in
      guard let verb = e["decision"] as? String, verb != "hold", let vm = e["vm"] as? String, let t = e["t"] as? Double
      else { return nil }
      return (t, verb, vm)
    }
  }

  func waitFor(_ what: String, seconds: Double, _ condition: @escaping () -> Bool) async throws {
    try await TestBed.waitUntil(deadlineSeconds: seconds, poll: 0.25, what) {
      if !self.process.isRunning && !condition() {
        throw TestBedError(location: "agent", what: "exited (\(self.process.terminationStatus)) while waiting for \(what)",
                           why: self.tail())
      }
      return condition()
    }
  }

  func tail(_ n: Int = 25) -> String {
    ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").suffix(n).joined(separator: "\n")
  }

  func stop(signal: Int32 = SIGTERM) -> Int32 {
    if process.isRunning { kill(process.processIdentifier, signal) }
    process.waitUntilExit()
    return process.terminationStatus
  }

  deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
}

/// A paced TCP sender from the bed's namespace to a guest's sink, reconnecting
/// across NIC swaps, until stopped. Python, because it must run inside the
/// namespace and pace itself.
final class TrafficSource {
  let process = Process()
  static let script = """
    import socket, sys, time
    ip, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    chunk = b'\\0' * 16384
    while True:
        try:
            s = socket.create_connection((ip, port), timeout=2)
            s.settimeout(2)
            t0, sent = time.monotonic(), 0
            while True:
                s.sendall(chunk)
                sent += len(chunk)
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except Exception:
            time.sleep(0.2)
    """

  init(to ip: String, bytesPerSecond: Double, namespace: String = "vfs-src", port: Int = 5001) throws {
    process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip").resolvingSymlinksInPath()
    if !FileManager.default.isExecutableFile(atPath: process.executableURL!.path) {
      process.executableURL = URL(fileURLWithPath: "/sbin/ip")
    }
    process.arguments = ["netns", "exec", namespace, "python3", "-c", TrafficSource.script, ip, "\(port)", "\(bytesPerSecond)"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
  }

  func stop() {
    if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
  }

  deinit { stop() }
}

/// `ping -D -O` from the namespace to one guest for the whole test: every
/// lost reply is a timestamped "no answer yet" line.
final class PingMonitor {
  let process = Process()
  let path: String
  let guest: String

  init(guest: String, ip: String, scratch: Scratch, namespace: String = "vfs-src", intervalSeconds: Double = 0.1) throws {
    self.guest = guest
    path = scratch.file("ping-\(guest).log")
    FileManager.default.createFile(atPath: path, contents: nil)
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["ip", "netns", "exec", namespace, "ping", "-n", "-D", "-O", "-i", "\(intervalSeconds)", "-W", "1", ip]
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    process.standardError = FileHandle.nullDevice
    try process.run()
  }

  /// (sent, lost) between two Unix times: a request counts as lost only if
  /// no reply to it ever came (at 10 ms, `-O` also reports late replies).
  func counts(from: Double, to: Double) -> (sent: Int, lost: Int) {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return (0, 0) }
    var answered = Set<Int>(), inWindow = Set<Int>()
    for line in text.split(separator: "\n") where line.hasPrefix("[") {
      guard let close = line.firstIndex(of: "]"), let t = Double(line[line.index(after: line.startIndex)..<close]),
            let seqRange = line.range(of: "icmp_seq=") else { continue }
      let seq = Int(line[seqRange.upperBound...].prefix { $0.isNumber }) ?? -1
      if line.contains("bytes from") { answered.insert(seq) }
      if t >= from, t <= to { inWindow.insert(seq) }
    }
    return (inWindow.count, inWindow.subtracting(answered).count)
  }

  /// When each request never answered between two Unix times was sent: `-O`
  /// reports it as the next request goes out, one interval later.
  func lostSendTimes(from: Double, to: Double, intervalSeconds: Double = 0.01) -> [Double] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    var answered = Set<Int>(), reported: [Int: Double] = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("[") {
      guard let close = line.firstIndex(of: "]"), let t = Double(line[line.index(after: line.startIndex)..<close]),
            let seqRange = line.range(of: "icmp_seq=") else { continue }
      let seq = Int(line[seqRange.upperBound...].prefix { $0.isNumber }) ?? -1
      if line.contains("bytes from") { answered.insert(seq) } else if reported[seq] == nil { reported[seq] = t - intervalSeconds }
    }
    return reported.filter { !answered.contains($0.key) && $0.value >= from && $0.value <= to }.map(\.value).sorted()
  }

  func stop() { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
  deinit { stop() }
}

/// One swap taken apart: when each of its steps was logged and when each ping
/// it lost was sent, in milliseconds from the swap's start (its journal).
func swapTimeline(_ agent: AgentProcess, vm: String, end: Double, seconds: Double, pings: PingMonitor?,
                  stream: TCPStream? = nil) -> String {
  let start = end - seconds
  let steps = agent.events("swap-step").compactMap { e -> (Double, String)? in
    guard e["vm"] as? String == vm, let t = unixTime(e["ts"]), t >= start - 0.05, t <= end + 0.05,
          let name = e["step"] as? String else { return nil }
    return (t, name)
  }
  let stepText = steps.map { "\($0.1) \(Int((($0.0 - start) * 1000).rounded()))" }.joined(separator: ", ")
  let lost = pings?.lostSendTimes(from: start - 0.5, to: end + 1).map { "\(Int((($0 - start) * 1000).rounded()))" } ?? []
  // Where the TCP stream stalled, so a long gap can be put beside the step it fell in.
  let gaps = stream?.gaps(from: start, to: end + 0.5).filter { $0.end - $0.start >= 0.1 }
    .map { "\(Int((($0.start - start) * 1000).rounded()))–\(Int((($0.end - start) * 1000).rounded()))" }
  return "    steps (ms from the journal at \(String(format: "%.3f", start))): \(stepText)\n    pings lost, sent at (ms): \(lost.isEmpty ? "none" : lost.joined(separator: ", "))"
    + (gaps.map { "\n    TCP stalls of 100 ms or more (ms): \($0.isEmpty ? "none" : $0.joined(separator: ", "))" } ?? "")
    + (guestShare(steps).map { "\n    \($0)" } ?? "")
}

/// Where a swap's time went: the guest's own parts (taking the new NIC and its
/// lease; letting the old one go) against the rest (libvirt's attach, the
/// agent's steps). Under TCG the guest's parts are most of it; with KVM and
/// real VFs they are what only real hardware can show.
func guestShare(_ steps: [(Double, String)]) -> String? {
  func at(_ name: String) -> Double? { steps.first { $0.1 == name }?.0 }
  guard let first = steps.first?.0, let attached = at("attached"), let uses = at("guest-uses-new"),
        let detach = at("detach-requested"), let done = at("done") else { return nil }
  let ms = { (s: Double) in Int((s * 1000).rounded()) }
  let taking = uses - attached, letting = done - detach, all = done - first
  return "guest's own: \(ms(taking + letting)) of \(ms(all)) ms (new NIC to its lease and the agent seeing it \(ms(taking)),"
    + " old NIC's unplug \(ms(letting))); libvirt's attach and the agent's steps \(ms(all - taking - letting)) ms"
}

func virsh(_ args: String...) throws -> String { try TestBed.run(["virsh", "-c", "qemu:///system"] + args) }

/// A bed guest's live inventory as the tests count it: its data side. The
/// management NIC, which vfshift must never touch, is checked (there once,
/// with the MAC, bridge and alias `up` gave it) and then left out.
func liveInventory(_ name: String) throws -> DomainInventory {
  var inv = try parseDomainXML(try virsh("dumpxml", name))
  let state = try TestBed.readState()
  guard let guest = state.guest(named: name), let alias = guest.managementAlias else { return inv }
  let mgmt = inv.nics.filter { $0.alias == alias }
  guard mgmt.count == 1, mgmt[0].mac == guest.managementMAC,
        mgmt[0].kind == .virtioBridge(bridge: state.managementBridge ?? "") else {
    throw ManagementNICChanged(vm: name, found: mgmt.map { "\($0.kind) \($0.mac)" })
  }
  inv.nics.removeAll { $0.alias == alias }
  return inv
}

struct ManagementNICChanged: Error, CustomStringConvertible {
  var vm: String
  var found: [String]
  var description: String { "\(vm): management NIC missing or changed (found: \(found))" }
}

/// ISO 8601 from the agent's log to Unix seconds.
func unixTime(_ iso: Any?) -> Double? {
  guard let s = iso as? String else { return nil }
  let f = ISO8601DateFormatter()
  f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
  return f.date(from: s)?.timeIntervalSince1970
}

/// A live test's start: the bed up and leased, every guest as `up` made it.
/// Hold the lease (`withExtendedLifetime`) for the whole test.
func leasedBed() throws -> (bed: TestBedState, lease: TestBedLease) {
  let bed = try TestBed.require()
  let lease = TestBedLease()
  try resetAllGuests(bed)
  return (bed, lease)
}

/// `vfshift run` on `policy` (its text, written to the scratch), once it has started.
func startedAgent(_ scratch: Scratch, policy: String, logName: String = "agent.log") async throws -> AgentProcess {
  try policy.write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
  let agent = try AgentProcess(scratch: scratch, policy: scratch.file("p.json"), logName: logName)
  try await agent.waitFor("agent start", seconds: 20) { !agent.events("start").isEmpty }
  return agent
}

/// Puts every guest back as `up` made it, so each test starts from the same bed.
func resetAllGuests(_ bed: TestBedState) throws {
  for guest in bed.guests { try TestBed.resetGuest(guest.name) }
}

/// Bridge ports the switch-over left changed: learning off (it turns it off
/// on the old port until the detach) or vfshift's DHCP redirect on the
/// port's egress (`tc` shows it at pref 245) — none may stay so once a swap settled.
func bridgePortsLeftChanged() throws -> [String] {
  var out: [String] = [], ports: [String] = []
  for line in try TestBed.run(["bridge", "-d", "link", "show"]).split(separator: "\n") {
    if let colon = line.firstIndex(of: ":"), line.first?.isNumber == true {
      ports.append(line[line.index(after: colon)...].split(whereSeparator: { " @:".contains($0) }).first.map(String.init) ?? "")
    } else if line.contains("learning off"), let port = ports.last {
      out.append("\(port) (learning off)")
    }
  }
  for port in ports where (try? TestBed.run(["tc", "filter", "show", "dev", port, "egress"]))?.contains("pref 245 ") == true {
    out.append("\(port) (DHCP redirect)")
  }
  return out
}
