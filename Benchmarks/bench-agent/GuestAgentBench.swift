// bench-agent --guest-agent: the guest-agent counter source (pool
// `counters: "guestAgent"`), two figures:
//
//   call per VM   = one `guest-network-get-interfaces` round trip to a real
//                   QEMU guest agent, parsed (median, p99): through libvirt's
//                   virDomainQemuAgentCommand when --domain names running
//                   domains with qemu-ga in them, and, always, to qemu-ga
//                   processes this benchmark starts on the host
//                   (`qemu-ga -m unix-listen`, the agent QEMU's virtio-serial
//                   chardev would connect; no TCG guest or virtio-serial hop:
//                   the test bed's guests have no qemu-ga yet)
//   cycle time    = what the agent's loop spends per cycle on 4 VMs measured
//                   that way (VFCounterSources.measure → observe → decide), with
//                   the 4 guest agents answering slowly (each reply held back
//                   `--slow-seconds`, under the timeout) and not at all (the 4
//                   qemu-ga processes SIGSTOPped: the socket accepts, nothing
//                   answers, the call times out), beside the same 4 VMs read from
//                   their host netdev (no guest agent) and beside asking the 4
//                   slow agents on the cycle's path (what `ask` keeps off it)
//
//   swift run -c release bench-agent --guest-agent [--cycles N] [--interval S]
//     [--calls N] [--slow-seconds S] [--domain NAME]...
//
// Requires /usr/sbin/qemu-ga (Debian: qemu-guest-agent). The last line is JSON.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import VFShiftAgent
import VFShiftFiles
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt
import BenchSupport

/// A qemu-ga reached over the unix socket it listens on. Each call connects,
/// sends the command, reads the one-line reply within the timeout.
final class UnixSocketGuestAgent: GuestAgentTransport, Sendable {
  let path: String
  /// Held back before the agent is asked: a guest that answers slowly.
  let delaySeconds: Double
  init(path: String, delaySeconds: Double = 0) { self.path = path; self.delaySeconds = delaySeconds }

  struct Failure: Error, CustomStringConvertible { var description: String }

  func networkInterfaces(uuid: String, timeoutSeconds: Int32) throws -> String {
    let deadline = ContinuousClock.now + .seconds(Int(timeoutSeconds))
    if delaySeconds > 0 { usleep(UInt32(delaySeconds * 1e6)) }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
    let rc = withUnsafePointer(to: &addr) { p in
      p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0 else { throw Failure(description: "connect \(path): errno \(errno)") }
    let command = Array((guestNetworkInterfacesCommand + "\n").utf8)
    guard send(fd, command, command.count, Int32(MSG_NOSIGNAL)) == command.count else { throw Failure(description: "send: errno \(errno)") }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while !reply.contains(UInt8(ascii: "\n")) {
      let left = deadline - ContinuousClock.now
      let ms = Int32(max(0, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
      var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let ready = poll(&pfd, 1, ms)
      guard ready > 0 else { throw Failure(description: "Guest agent is not responding: no reply within \(timeoutSeconds) s") }
      let n = recv(fd, &chunk, chunk.count, 0)
      guard n > 0 else { throw Failure(description: "the agent closed the connection") }
      reply += chunk[0..<n]
    }
    return String(decoding: reply, as: UTF8.self)
  }
}

/// A qemu-ga process of this benchmark, stopped (SIGKILL) at the end.
final class GuestAgentProcess {
  let process = Process()
  let socket: String
  let directory: String
  init(index: Int) throws {
    directory = NSTemporaryDirectory() + "vfshift-bench-qga-\(getpid())-\(index)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    socket = directory + "/qga.sock"
    process.executableURL = URL(fileURLWithPath: "/usr/sbin/qemu-ga")
    process.arguments = ["-m", "unix-listen", "-p", socket, "-t", directory]
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(10)
    while !FileManager.default.fileExists(atPath: socket) {
      guard Date() < deadline, process.isRunning else { throw UnixSocketGuestAgent.Failure(description: "qemu-ga made no socket at \(socket)") }
      usleep(10_000)
    }
  }
  func pause() { kill(process.processIdentifier, SIGSTOP) }
  func resume() { kill(process.processIdentifier, SIGCONT) }
  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    try? FileManager.default.removeItem(atPath: directory)
  }
}

func percentile(_ values: [Double], _ p: Double) -> Double {
  guard !values.isEmpty else { return .nan }
  let s = values.sorted()
  return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
}


func runGuestAgentBenchmark(_ argv: [String]) -> Int32 {
  var cycleCount = 15
  var interval = 1.0
  var calls = 200
  var slowSeconds = 0.8
  var domainNames: [String] = []
  var args = argv[...]
  while let flag = args.popFirst() {
    guard let value = args.popFirst() else { print("bench-agent --guest-agent: \(flag) needs a value"); return 64 }
    switch flag {
    case "--cycles": cycleCount = Int(value) ?? cycleCount
    case "--interval": interval = Double(value) ?? interval
    case "--calls": calls = Int(value) ?? calls
    case "--slow-seconds": slowSeconds = Double(value) ?? slowSeconds
    case "--domain": domainNames.append(value)
    default: print("bench-agent --guest-agent: unknown option \(flag)"); return 64
    }
  }
  guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/qemu-ga") else {
    print("bench-agent --guest-agent: /usr/sbin/qemu-ga is missing (apt-get install qemu-guest-agent)")
    return 1
  }
  var agents: [GuestAgentProcess] = []
  defer { agents.forEach { $0.stop() } }
  var result: [String: Any] = [:]
  do {
    for i in 0..<4 { agents.append(try GuestAgentProcess(index: i)) }

    // Figure 1: one call per VM, to a real qemu-ga, parsed.
    let direct = UnixSocketGuestAgent(path: agents[0].socket)
    let probe = try parseGuestNetworkInterfaces(try direct.networkInterfaces(uuid: "probe", timeoutSeconds: 5))
    guard let measured = probe.first(where: { $0.counters != nil && $0.mac != nil && $0.mac != "00:00:00:00:00:00" })
            ?? probe.first(where: { $0.counters != nil && $0.mac != nil }) else {
      print("bench-agent --guest-agent: qemu-ga reports no interface with statistics"); return 1
    }
    var callMs: [Double] = []
    for _ in 0..<calls {
      let began = ContinuousClock.now
      _ = try parseGuestNetworkInterfaces(try direct.networkInterfaces(uuid: "vm", timeoutSeconds: 5))
      callMs.append(milliseconds(ContinuousClock.now - began))
    }
    print("guest-agent call per VM, qemu-ga over its unix socket, \(calls) calls: median \(fmt3(percentile(callMs, 0.5))) ms, p99 \(fmt3(percentile(callMs, 0.99))) ms")
    result["qga_socket_call_median_ms"] = percentile(callMs, 0.5)
    result["qga_socket_call_p99_ms"] = percentile(callMs, 0.99)

    if !domainNames.isEmpty {
      // The test bed's lease (Tests/Support TestBedLease): no test swaps or
      // resets these guests while they are timed.
      let lease = open("/run/vfshift-testbed/tests.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
      if lease >= 0 { _ = flock(lease, LOCK_EX) }
      defer { if lease >= 0 { close(lease) } }
      let connection = try LibvirtConnection(uri: "qemu:///system")
      defer { connection.close() }
      let running = try connection.runningDomains()
      for name in domainNames {
        guard let d = running.first(where: { $0.name == name }) else { print("no running domain \(name)"); return 1 }
        var ms: [Double] = []
        for _ in 0..<calls {
          let began = ContinuousClock.now
          _ = try parseGuestNetworkInterfaces(try connection.networkInterfaces(uuid: d.uuid, timeoutSeconds: 5))
          ms.append(milliseconds(ContinuousClock.now - began))
        }
        print("guest-agent call per VM through libvirt, domain \(name), \(calls) calls: median \(fmt3(percentile(ms, 0.5))) ms, p99 \(fmt3(percentile(ms, 0.99))) ms")
        result["libvirt_call_median_ms_\(name)"] = percentile(ms, 0.5)
        result["libvirt_call_p99_ms_\(name)"] = percentile(ms, 0.99)
      }
    } else {
      print("(no --domain: the call through libvirt is not measured; it needs guests running qemu-ga, which the test bed's do not yet)")
    }

    // Figure 2: the cycle with 4 VMs on the guest agent.
    var policy = try loadPolicy(URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../policies/paper-multinetwork.json").standardized.path)
    let domains = try (0..<4).map { n in
      try parseDomainXML("""
        <domain type='qemu'><name>ga\(n)</name><uuid>00000000-0000-4000-8000-0000000a000\(n)</uuid>
        <metadata><vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/></metadata>
        <devices><interface type='direct'><mac address='\(measured.mac!)'/><source network='vf-pool' dev='vfsvf\(n)' mode='passthrough'/>
        <target dev='macvtap\(n)'/><model type='virtio'/><alias name='ua-vfshift-vf'/></interface></devices></domain>
        """)
    }
    var snapshot: [String: InterfaceCounters] = [:]
    for n in 0..<4 { snapshot["macvtap\(n)"] = InterfaceCounters(rxBytes: 1000, txBytes: 1000) }
    let counters = CounterSnapshot(snapshot)
    let started = ContinuousClock.now
    let clock: @Sendable () -> Instant = { Instant(seconds: milliseconds(ContinuousClock.now - started) / 1e3) }
    let pools = ["x540": 4]

    struct Slow: GuestAgentTransport {
      let agents: [String: UnixSocketGuestAgent]
      func networkInterfaces(uuid: String, timeoutSeconds: Int32) throws -> String {
        try agents[uuid]!.networkInterfaces(uuid: uuid, timeoutSeconds: timeoutSeconds)
      }
    }
    let slow = Slow(agents: Dictionary(uniqueKeysWithValues: domains.indices.map {
      (domains[$0].uuid, UnixSocketGuestAgent(path: agents[$0].socket, delaySeconds: slowSeconds))
    }))

    /// Runs `cycleCount` cycles at `interval`, timing measure → observe → decide.
    func cycles(_ counters_: PoolCounters, transport: any GuestAgentTransport, onPath: Bool = false, count: Int) -> (ms: [Double], known: Int) {
      policy.pools[0].counters = counters_
      let poller = GuestAgentPoller(transport: transport, timeoutSeconds: 1, clock: clock)
      let sources = VFCounterSources(sysfs: SysfsRoot("/nonexistent"), poller: poller, pfStatistics: { _ in [:] })
      var state = EngineState()
      var ms: [Double] = []
      var known = 0
      var next = ContinuousClock.now
      for _ in 0..<count {
        let began = ContinuousClock.now
        if onPath { for d in domains { _ = try? transport.networkInterfaces(uuid: d.uuid, timeoutSeconds: 1) } }
        let now = clock()
        let m = sources.measure(domains: domains, policy: policy, counters: counters, now: now, generation: 1)
        let observation = observe(domains: domains, counters: counters, policy: policy, poolTotals: pools, now: now, measurements: m)
        _ = decide(&state, policy: policy, observation: observation, now: now)
        ms.append(milliseconds(ContinuousClock.now - began))
        known += observation.vms.filter { !$0.reading.isUnknown }.count
        next = next + .seconds(interval)
        if next > ContinuousClock.now { Thread.sleep(forTimeInterval: milliseconds(next - ContinuousClock.now) / 1e3) }
      }
      return (ms, known)
    }

    let host = cycles(.host, transport: slow, count: cycleCount)
    let slowCycles = cycles(.guestAgent, transport: slow, count: cycleCount)
    agents.forEach { $0.pause() }
    let silent = cycles(.guestAgent, transport: slow, count: cycleCount)
    agents.forEach { $0.resume() }
    let onPath = cycles(.host, transport: slow, onPath: true, count: 3)

    func line(_ what: String, _ r: (ms: [Double], known: Int), _ n: Int) {
      print("\(what.padding(toLength: 52, withPad: " ", startingAt: 0)) median \(fmt3(percentile(r.ms, 0.5))) ms  p99 \(fmt3(percentile(r.ms, 0.99))) ms  max \(fmt3(r.ms.max() ?? .nan)) ms  readings known \(r.known)/\(n * 4)")
    }
    print("cycle time, 4 VMs, \(cycleCount) cycles every \(interval) s, guest-agent timeout 1 s:")
    line("host netdev (no guest agent)", host, cycleCount)
    line("guest agent, 4 answering in \(slowSeconds) s", slowCycles, cycleCount)
    line("guest agent, 4 not answering (qemu-ga stopped)", silent, cycleCount)
    line("4 slow guest agents asked on the cycle's path", onPath, 3)
    let slowMedian = percentile(slowCycles.ms, 0.5), silentMedian = percentile(silent.ms, 0.5), hostMedian = percentile(host.ms, 0.5)
    result["cycle_host_median_ms"] = hostMedian
    result["cycle_slow_agents_median_ms"] = slowMedian
    result["cycle_slow_agents_p99_ms"] = percentile(slowCycles.ms, 0.99)
    result["cycle_silent_agents_median_ms"] = silentMedian
    result["cycle_silent_agents_p99_ms"] = percentile(silent.ms, 0.99)
    result["cycle_on_path_slow_agents_median_ms"] = percentile(onPath.ms, 0.5)
    result["silent_over_slow_cycle_ratio"] = silentMedian / slowMedian
    result["slow_over_host_cycle_ratio"] = slowMedian / hostMedian
    result["on_path_over_slow_cycle_ratio"] = percentile(onPath.ms, 0.5) / slowMedian
    result["slow_readings_known"] = slowCycles.known
    result["silent_readings_known"] = silent.known
    print("ratios: silent/slow \(fmt3(silentMedian / slowMedian)), slow/host \(fmt3(slowMedian / hostMedian)), on-path/slow \(fmt3(percentile(onPath.ms, 0.5) / slowMedian))")
  } catch {
    print("bench-agent --guest-agent: \(error)")
    return 1
  }
  let json = try! JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
  print(String(decoding: json, as: UTF8.self))
  return 0
}

func fmt3(_ d: Double) -> String { String(format: "%.3f", d) }
