// bench-agent: the CPU cost of one agent cycle (observe + decide, no swaps)
// for 1,000 VMs over 4,000 interfaces, against the kernel's own cost to hand
// over the counters, in the same run; then the agent process itself.
//
//   agent cycle  = HostCounterReader.read() (netlink RTM_GETSTATS)
//                  + Agent.cycleWithoutActing (observe → decide → log → metrics → status
//                    file every tenth cycle): exactly what `vfshift run` does per
//                    cycle, minus libvirt's inventory snapshot and the swaps
//   floor        = BareNetlinkDump(.getStats): the RTM_GETSTATS dump received to
//                  NLMSG_DONE, no decoding (the same floor bench-counters uses)
//   naive agent  = libvirt's per-interface way, once per VM: fopen /proc/net/dev,
//                  fgets until the VM's name, parse, fclose
//   vfshift run  = the real agent binary (built next to this one), --dry-run, on
//                  the same 1,000 domains given to libvirt's test driver through
//                  libvirtd (test+unix://, so the driver's copy of the domains is
//                  the daemon's, as in production; in-process test:// when no
//                  daemon runs), in the benchmark's namespace, with the traffic
//                  going on: its whole-process CPU clock (every thread) over
//                  real seconds after its start-up, and its VmRSS at the end
//
// CPU time is user + system from getrusage(RUSAGE_THREAD) around each cycle
// and each floor dump, interleaved so both see the same machine. Steady CPU %
// at a 1 s interval is given three times: cycle CPU / 1 s; getrusage(RUSAGE_SELF)
// over real seconds of cycles with this loop sleeping to the next tick between
// them; and the vfshift run process's CPU clock (also per thread). Next to
// them, what one RTM_GETSTATS dump a second costs the kernel alone: back to
// back, and once a tick half-way between the sleeping loop's cycles, after
// the same pause the agent has. RSS: the target is judged on vfshift run
// (this process's own VmRSS is printed too; it holds the same agent code
// plus the benchmark's own state).
//
// The benchmark makes its own namespace with N/2 veth pairs, enters it on the
// main thread, and deletes it at the end, also on failure. The inventory is
// generated (1,000 DomainInventory values, as Inventory builds them from live
// XML). Counters move: before each cycle, untimed, a few Ethernet frames are
// sent on the devices of the "hot" VMs (AF_PACKET, no IP, inside the namespace).
//
//   swift build --scratch-path .build-benchagent -c release --product vfshift
//   swift run --scratch-path .build-benchagent -c release bench-agent \
//     [--vms N] [--interfaces N] [--cycles N] [--steady-seconds N] [--hot N] [--agent-seconds N] [--contention-rounds N] [--policy FILE]
//
// The last line of output is one JSON object with every figure; ratios end in
// `_ratio` and say what over what.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import VFShiftAgent
import VFShiftFiles
import VFShiftCore
import VFShiftHost
import BenchSupport
import VFShiftLibvirt

// `bench-agent --guest-agent`: the guest-agent counter source instead (GuestAgentBench.swift).
if CommandLine.arguments.dropFirst().first == "--guest-agent" {
  exit(runGuestAgentBenchmark(Array(CommandLine.arguments.dropFirst(2))))
}

// MARK: - Arguments

var vmCount = 1000
var interfaceCount = 4000
var cycles = 300
var steadySeconds = 10
var hotCount = 50
var poolVMCount = 4
var naiveRounds = 5
/// Seconds of `vfshift run` measured from outside (after its start-up); 0 skips it.
var agentSeconds = 20
/// Rounds of the CPU-contention read; 0 skips that part.
var contentionRounds = 20
var policyPath: String? = nil
/// An existing namespace with the veths already made (for valgrind, which cannot spawn `ip`).
var givenNamespace: String? = nil
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--vcpu-threads-child", let n = Int(CommandLine.arguments[2]) {
  vcpuThreadsChild(n)
}
do {
  let usage = "usage: bench-agent [--vms N] [--interfaces N] [--cycles N] [--steady-seconds N] [--hot N] [--naive-rounds N] [--agent-seconds N] [--contention-rounds N] [--policy FILE] [--netns NAME]"
  var args = CommandLine.arguments.dropFirst()
  while let flag = args.popFirst() {
    guard let raw = args.popFirst() else { FileHandle.standardError.write("error: \(flag) needs a value\n\(usage)\n".data(using: .utf8)!); exit(64) }
    if flag == "--policy" { policyPath = raw; continue }
    if flag == "--netns" { givenNamespace = raw; continue }
    guard let value = Int(raw), value >= 0 else {
      FileHandle.standardError.write("error: \(flag) needs a number, got '\(raw)'\n\(usage)\n".data(using: .utf8)!)
      exit(64)
    }
    switch flag {
    case "--vms": vmCount = value
    case "--interfaces": interfaceCount = value
    case "--cycles": cycles = max(10, value)
    case "--steady-seconds": steadySeconds = value
    case "--hot": hotCount = value
    case "--naive-rounds": naiveRounds = value
    case "--agent-seconds": agentSeconds = value
    case "--contention-rounds": contentionRounds = value
    default:
      FileHandle.standardError.write("error: unknown option \(flag)\n\(usage)\n".data(using: .utf8)!)
      exit(64)
    }
  }
}


// MARK: - CPU time

/// user + system of this thread (RUSAGE_THREAD) or the process, in ms.
func cpuMilliseconds(thread: Bool = true) -> Double {
  var usage = rusage()
  _ = getrusage(thread ? __rusage_who_t(1) : __rusage_who_t(RUSAGE_SELF.rawValue), &usage)  // 1 = RUSAGE_THREAD
  func ms(_ t: timeval) -> Double { Double(t.tv_sec) * 1e3 + Double(t.tv_usec) / 1e3 }
  return ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// This thread's CPU clock (user + system as one figure, in ns): getrusage
/// here ticks in whole jiffies per call, too coarse for one 2 ms cycle, but
/// summed over hundreds of cycles it agrees with this clock.
func threadClockMilliseconds() -> Double {
  var t = timespec()
  _ = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
  return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
}

/// Sum of getrusage deltas per figure name, for the means over N cycles.
nonisolated(unsafe) var rusageTotals: [String: (ms: Double, count: Int)] = [:]

/// Times `body` on this thread's CPU clock; adds its getrusage delta to `name`'s total.
@inline(__always) func cpu(_ name: String = "", _ body: () throws -> Void) rethrows -> Double {
  let startUsage = cpuMilliseconds()
  let start = threadClockMilliseconds()
  try body()
  let elapsed = threadClockMilliseconds() - start
  if !name.isEmpty {
    let used = cpuMilliseconds() - startUsage
    rusageTotals[name, default: (0, 0)].ms += used
    rusageTotals[name, default: (0, 0)].count += 1
  }
  return elapsed
}

/// Mean over N calls from getrusage (user + system).
func rusageMean(_ name: String) -> Double {
  guard let t = rusageTotals[name], t.count > 0 else { return .nan }
  return t.ms / Double(t.count)
}

struct Figure: CustomStringConvertible {
  let mean: Double, median: Double, min: Double
  init(_ samples: [Double]) {
    let sorted = samples.sorted()
    mean = samples.reduce(0, +) / Double(max(1, samples.count))
    median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    min = sorted.first ?? 0
  }
  var description: String { String(format: "mean %7.3f ms  median %7.3f ms  min %7.3f ms", mean, median, min) }
}

/// VmRSS / VmHWM of this process, in MB.
func memory() -> (rss: Double, peak: Double) {
  guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
  func kB(_ key: String) -> Double {
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
      return Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }
    return 0
  }
  return (kB("VmRSS:") / 1024, kB("VmHWM:") / 1024)
}

// MARK: - Traffic: Ethernet frames on a veth, no IP

/// struct sockaddr_ll, as in linux/if_packet.h.
struct SockaddrLL {
  var family = UInt16(AF_PACKET)
  var proto = UInt16(0x88B5).bigEndian  // IEEE local experimental ethertype
  var ifindex: Int32 = 0
  var hatype: UInt16 = 0
  var pkttype: UInt8 = 0
  var halen: UInt8 = 6
  var addr: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0)
}

/// Sends frames out of veth ends the benchmark brought up; the peer receives
/// and drops them (unknown ethertype), so both ends' counters move.
final class FrameSender {
  let fd: CInt
  var frame: [UInt8]
  init(frameBytes: Int) throws {
    fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)  // protocol 0: send only
    guard fd >= 0 else { throw BenchError(description: "socket(AF_PACKET): errno \(errno)") }
    frame = [UInt8](repeating: 0x5a, count: frameBytes)
    frame.replaceSubrange(0..<14, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xB5])
  }
  deinit { close(fd) }
  func send(ifindex: Int32, frames: Int) throws {
    var address = SockaddrLL()
    address.ifindex = ifindex
    for _ in 0..<frames {
      let n = frame.withUnsafeBytes { raw in
        withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<SockaddrLL>.size))
          }
        }
      }
      guard n == frame.count else { throw BenchError(description: "sendto(AF_PACKET, ifindex \(ifindex)): errno \(errno)") }
    }
  }
}

// MARK: - The naive agent: libvirt's per-interface lookup, once per VM


// MARK: - The generated inventory

/// 1,000 running domains as Inventory builds them from live XML: one virtio
/// NIC on a tap each (the veth `vfaN` stands in for `vnetN`), a tenth labelled
/// high and a tenth low, the first few holding a pool member (macvtap).
@MainActor func inventory(policy: Policy) -> [DomainInventory] {
  let pairs = interfaceCount / 2
  let network = policy.pools.first?.network ?? "vf-pool"
  return (0..<vmCount).map { i in
    let device = (i * pairs / max(1, vmCount)) % max(1, pairs)  // spread over the whole table
    let mac = String(format: "52:54:00:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
    let nic = i < poolVMCount
      ? NIC(kind: .poolMember(network: network, memberDev: "vfb\(device)"), model: nil, mac: mac, alias: "ua-net0",
            hostDevice: "vfb\(device)", hostDeviceKind: .macvtap, teaming: nil, xml: "")
      : NIC(kind: .virtioBridge(bridge: "br-bench"), model: "virtio", mac: mac, alias: "ua-net0",
            hostDevice: "vfa\(device)", hostDeviceKind: .tap, teaming: nil, xml: "")
    let label: String? = switch i % 10 { case 0: "high"; case 1: "low"; default: nil }
    return DomainInventory(uuid: String(format: "6d1a0b3c-0000-4000-8000-%012x", i), name: "bench-vm\(i)",
                           qosLabel: label, journal: nil, nics: [nic])
  }
}

// MARK: - The agent process

struct AgentProcessFigures {
  var what: String
  var rss: Double, peak: Double, anon: Double, file: Double, rssAtStart: Double
  var cpuPercent: Double, seconds: Double, threads: Int
}

/// Fields of /proc/PID/status, in MB (the kB ones) or as numbers.
func procStatus(_ pid: Int32) -> [String: Double] {
  guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return [:] }
  var out: [String: Double] = [:]
  for line in text.split(separator: "\n") {
    let parts = line.split(separator: ":", maxSplits: 1)
    guard parts.count == 2 else { continue }
    let words = parts[1].split(whereSeparator: { $0 == " " || $0 == "\t" })
    guard let n = words.first.flatMap({ Double($0) }) else { continue }
    out[String(parts[0])] = words.count > 1 && words[1] == "kB" ? n / 1024 : n
  }
  return out
}

/// The whole process's CPU time (every thread, live or gone) in ms.
func processCPUMilliseconds(_ pid: Int32) -> Double? {
  var clock = clockid_t()
  guard clock_getcpuclockid(pid, &clock) == 0 else { return nil }
  var t = timespec()
  guard clock_gettime(clock, &t) == 0 else { return nil }
  return Double(t.tv_sec) * 1e3 + Double(t.tv_nsec) / 1e6
}

/// CPU milliseconds of each of a process's threads, keyed "tid name", from
/// /proc/PID/task/*/schedstat (time on a CPU, in ns): where a process's CPU
/// goes beyond its main loop.
func threadCPUMilliseconds(_ pid: Int32) -> [String: Double] {
  var out: [String: Double] = [:]
  let dir = "/proc/\(pid)/task"
  for tid in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
    guard let sched = try? String(contentsOfFile: "\(dir)/\(tid)/schedstat", encoding: .utf8),
          let ns = sched.split(separator: " ").first.flatMap({ Double($0) }) else { continue }
    let name = (try? String(contentsOfFile: "\(dir)/\(tid)/comm", encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    out["\(tid) \(name)"] = ns / 1e6
  }
  return out
}

/// Runs the real agent, `vfshift run --dry-run`, in the benchmark's namespace
/// on libvirt's test driver, given the same 1,000 domains as a node file
/// (each a running domain with a virtio NIC on its veth, labelled as above;
/// the test driver cannot show a pool member, so the pool VMs are on virtio
/// there). The benchmark keeps sending its traffic each second meanwhile.
/// After `agentSeconds / 4` of start-up, it measures the process's CPU clock
/// over the rest, then its memory, then stops it with SIGTERM.
@MainActor func measureAgentProcess(domains: [DomainInventory], policyFile: String,
                                    poolTotals: [String: Int], traffic: () throws -> Void) throws -> AgentProcessFigures? {
  let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    .appendingPathComponent("vfshift").path
  guard FileManager.default.isExecutableFile(atPath: exe) else {
    note("vfshift run: skipped, no \(exe) (build the vfshift product into the same scratch path)")
    result["agent_process"] = "skipped: no vfshift next to bench-agent"
    return nil
  }
  var xml = "<node>\n"
  for d in domains {
    let nic = d.nics[0]
    let device = nic.hostDeviceKind == .tap ? nic.hostDevice! : "vfa" + nic.hostDevice!.dropFirst(3)
    let label = d.qosLabel.map { "<metadata><vfshift:qos xmlns:vfshift='https://vfshift.dev/ns/qos/1' class='\($0)'/></metadata>" } ?? ""
    xml += "<domain type='test'><name>\(d.name)</name><uuid>\(d.uuid)</uuid><memory>65536</memory><vcpu>1</vcpu>"
    xml += "<os><type>hvm</type></os>\(label)<devices><interface type='bridge'><mac address='\(nic.mac)'/>"
    xml += "<source bridge='br-bench'/><target dev='\(device)'/><model type='virtio'/><alias name='ua-net0'/></interface></devices></domain>\n"
  }
  xml += "</node>\n"
  let node = statusDirectory.appendingPathComponent("node.xml")
  try xml.write(to: node, atomically: true, encoding: .utf8)
  // Through libvirtd when one runs, as in production: the test driver's copy
  // of the 1,000 domains then lives in the daemon. Without one, in-process
  // (test://), and the agent's memory includes that copy.
  let viaDaemon = FileManager.default.fileExists(atPath: "/var/run/libvirt/libvirt-sock")
  let uri = (viaDaemon ? "test+unix://" : "test://") + node.path
  let startup = max(1, agentSeconds / 4), window = max(1, agentSeconds - startup)
  note("vfshift run: \(domains.count) domains on \(uri), \(startup) s to start, then \(window) s measured ...")
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  p.arguments = ["ip", "netns", "exec", namespaceName, exe, "run", "--policy", policyFile, "--dry-run",
                 "--connect", uri, "--listen", "127.0.0.1:0",
                 "--status-file", statusDirectory.appendingPathComponent("agent-status.json").path,
                 "--lock-file", statusDirectory.appendingPathComponent("agent.lock").path]
                + poolTotals.map { ["--pool-size", "\($0.key)=\($0.value)"] }.joined()
  p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
  p.standardError = FileHandle(forWritingAtPath: "/dev/null")
  try p.run()
  // `ip netns exec` execs the command in place: the pid is the agent's.
  let pid = p.processIdentifier
  defer { if p.isRunning { kill(pid, SIGKILL) }; p.waitUntilExit() }
  let clock = ContinuousClock()
  func pace(_ seconds: Int) throws {
    for _ in 0..<seconds {
      let next = clock.now + .seconds(1)
      try traffic()
      let left = next - clock.now
      if left > .zero { Thread.sleep(forTimeInterval: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18) }
    }
  }
  try pace(startup)
  guard p.isRunning, let c0 = processCPUMilliseconds(pid) else {
    throw BenchError(description: "vfshift run exited during start-up (status \(p.isRunning ? -1 : p.terminationStatus))")
  }
  let atStart = procStatus(pid)
  let threadsAtStart = threadCPUMilliseconds(pid)
  let t0 = clock.now
  try pace(window)
  guard let c1 = processCPUMilliseconds(pid) else { throw BenchError(description: "vfshift run exited while measured") }
  let threadsAtEnd = threadCPUMilliseconds(pid)
  let wall = (clock.now - t0)
  let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
  let status = procStatus(pid)
  kill(pid, SIGTERM)
  p.waitUntilExit()
  let figures = AgentProcessFigures(
    what: "\(domains.count) domains on libvirt's test driver "
      + (viaDaemon ? "served by libvirtd (test+unix://)" : "in the agent's process (test://, its domains counted in the RSS)")
      + ", dry run, metrics on loopback",
    rss: status["VmRSS"] ?? 0, peak: status["VmHWM"] ?? 0, anon: status["RssAnon"] ?? 0,
    file: status["RssFile"] ?? 0, rssAtStart: atStart["VmRSS"] ?? 0,
    cpuPercent: (c1 - c0) / (seconds * 1000) * 100, seconds: seconds, threads: Int(status["Threads"] ?? 0))
  note(String(format: "  CPU %.1f ms over %.2f s: %.3f %% of a core; RSS %.1f MB (anonymous %.1f, files %.1f), %d threads; exit %d",
              c1 - c0, seconds, figures.cpuPercent, figures.rss, figures.anon, figures.file, figures.threads, p.terminationStatus))
  // Per thread: the agent's loop, libvirt's event loop, the metrics listener.
  for (thread, end) in threadsAtEnd.sorted(by: { $0.key < $1.key }) {
    note(String(format: "    thread %@: %.1f ms", thread, end - (threadsAtStart[thread] ?? 0)))
  }
  return figures
}

// MARK: - The run

let namespaceName = givenNamespace ?? "vfs-agent-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
let statusDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("vfshift-bench-agent-\(getpid())")
var result: [String: Any] = ["vms": vmCount, "interfaces": interfaceCount, "cycles": cycles, "hot_vms": hotCount,
                             "pool_vms": poolVMCount]

/// Log lines go where the agent's go (a file descriptor write each), but to /dev/null.
final class NullLog: Sendable {
  let handle = FileHandle(forWritingAtPath: "/dev/null")!
  let lines = Mutex(0)
}

@MainActor func makeNamespace(hot: [DomainInventory]) throws {
  try run(["ip", "netns", "add", namespaceName])
  // Up interfaces would send IPv6 DAD and router solicitations by themselves.
  try run(["ip", "netns", "exec", namespaceName, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1"])
  let batch = FileManager.default.temporaryDirectory.appendingPathComponent("\(namespaceName).batch")
  var lines = ["link set lo up"]
  for i in 0..<(interfaceCount / 2) { lines.append("link add vfa\(i) type veth peer name vfb\(i)") }
  for vm in hot {
    let a = vm.nics[0].hostDevice!
    lines.append("link set \(a) up")
    lines.append("link set vfb\(a.dropFirst(3)) up")
  }
  try lines.joined(separator: "\n").write(to: batch, atomically: true, encoding: .utf8)
  defer { try? FileManager.default.removeItem(at: batch) }
  let created = ContinuousClock.now
  try run(["ip", "-n", namespaceName, "-batch", batch.path])
  note("  created in \(created.duration(to: .now))")
}

@MainActor func benchmark() throws {
  guard let data = bundledDataDirectory() else { throw BenchError(description: "bundled policies not found; set VFSHIFT_DATA") }
  let policyFile = policyPath ?? "\(data)/policies/general.json"
  let policy = try loadPolicy(policyFile)
  result["policy"] = policy.name
  guard hotCount + poolVMCount <= vmCount, interfaceCount >= 2 * vmCount else {
    throw BenchError(description: "need --hot + \(poolVMCount) pool VMs <= --vms and --interfaces >= 2 x --vms")
  }

  let domains = inventory(policy: policy)
  let hot = Array(domains[poolVMCount..<(poolVMCount + hotCount)])
  note("bench-agent: \(vmCount) VMs, \(interfaceCount) interfaces in namespace \(namespaceName), policy \(policy.name)")
  if givenNamespace == nil { try makeNamespace(hot: hot) }
  try NetworkNamespace(name: namespaceName).enterForCurrentThread()

  let reader = HostCounterReader()
  guard reader.source == .netlink else { throw BenchError(description: "HostCounterReader fell back: \(reader.fallbackReason ?? "?")") }
  let floor = try BareNetlinkDump()
  let sender = try FrameSender(frameBytes: 1000)
  let hotIndexes = hot.map { Int32(if_nametoindex($0.nics[0].hostDevice!)) }
  guard !hotIndexes.contains(0) else { throw BenchError(description: "a hot VM's device has no ifindex") }
  let first = try reader.read()
  guard first.count >= interfaceCount else { throw BenchError(description: "netlink shows \(first.count) interfaces, expected \(interfaceCount)+") }
  result["interfaces_seen"] = first.count

  try FileManager.default.createDirectory(at: statusDirectory, withIntermediateDirectories: true)
  var config = AgentConfig(policyPath: policyFile)
  config.statusPath = statusDirectory.appendingPathComponent("status.json").path
  config.metricsListen = nil
  let log = NullLog()
  let agent = try Agent(config: config, log: EventLog(write: { line in
    log.handle.write((line + "\n").data(using: .utf8)!)
    log.lines.withLock { $0 += 1 }
  }))
  let poolTotals = Dictionary(uniqueKeysWithValues: policy.pools.map { ($0.name, 8) })

  // Simulated time: one policy interval per cycle, whatever the wall clock does,
  // so the engine sees the agent's steady 1 s cadence.
  var tick = 0
  var now: Instant { Instant(seconds: Double(tick) * policy.intervalSeconds) }
  var trafficFrames = 0
  func traffic() throws {
    // A few VMs busier than others, all far below the promote threshold: counters
    // move, rates are computed and smoothed, no swap is planned.
    for (k, index) in hotIndexes.enumerated() {
      let frames = 1 + (k + tick) % 8
      try sender.send(ifindex: index, frames: frames)
      trafficFrames += frames
    }
  }
  var actions = 0
  func agentCycle() throws {
    let counters = try reader.read()
    if let plan = agent.cycleWithoutActing(domains: domains, counters: counters, poolTotals: poolTotals, now: now, generation: 1) {
      actions += plan.actions.count
    }
    agent.cycleFinished()
  }

  // Warm-up: baselines, first rates, caches.
  for _ in 0..<20 { try traffic(); try agentCycle(); _ = try floor.dump(.getStats); tick += 1 }

  // The main figure: each cycle next to one bare dump, alternating which goes first.
  note("timing \(cycles) cycles, each next to a bare RTM_GETSTATS dump (CPU time, user + system):")
  var cycleCPU: [Double] = [], floorCPU: [Double] = []
  for round in 0..<cycles {
    try traffic()
    if round % 2 == 0 {
      cycleCPU.append(try cpu("cycle") { try agentCycle() })
      floorCPU.append(try cpu("floor") { _ = try floor.dump(.getStats) })
    } else {
      floorCPU.append(try cpu("floor") { _ = try floor.dump(.getStats) })
      cycleCPU.append(try cpu("cycle") { try agentCycle() })
    }
    tick += 1
  }
  let cycleFigure = Figure(cycleCPU), floorFigure = Figure(floorCPU)
  note("  " + pad("agent cycle (read + cycleWithoutActing)", 40) + " \(cycleFigure)")
  note("  " + pad("bare RTM_GETSTATS dump (floor)", 40) + " \(floorFigure)")

  // The breakdown, in one pass on the same counters: the public stages on an
  // engine state of the benchmark's own, then the agent's call, whose excess
  // over observe + decide is its logging, metrics and status file.
  note("breakdown over \(cycles / 2) cycles:")
  var benchState = EngineState()
  var benchPositions = DevicePositions()
  var readCPU: [Double] = [], observeCPU: [Double] = [], decideCPU: [Double] = [], agentCPU: [Double] = []
  for _ in 0..<(cycles / 2 + 20) {
    try traffic()
    var counters = CounterSnapshot()
    let r = try cpu("read") { counters = try reader.read() }
    var observation = Observation(vms: [], pools: [:])
    let o = cpu("observe") { observation = observe(domains: domains, counters: counters, policy: policy, poolTotals: poolTotals, now: now, generation: 1, positions: &benchPositions) }
    let d = cpu("decide") { _ = decide(&benchState, policy: policy, observation: observation, now: now) }
    let a = cpu("agent") { _ = agent.cycleWithoutActing(domains: domains, counters: counters, poolTotals: poolTotals, now: now, generation: 1); agent.cycleFinished() }
    tick += 1
    readCPU.append(r); observeCPU.append(o); decideCPU.append(d); agentCPU.append(a)
  }
  // The first 20 let the benchmark's own engine state settle.
  let drop = 20
  let readFigure = Figure(Array(readCPU.dropFirst(drop))), observeFigure = Figure(Array(observeCPU.dropFirst(drop)))
  let decideFigure = Figure(Array(decideCPU.dropFirst(drop))), agentFigure = Figure(Array(agentCPU.dropFirst(drop)))
  let restMean = max(0, agentFigure.mean - observeFigure.mean - decideFigure.mean)
  note("  " + pad("read (HostCounterReader, netlink)", 40) + " \(readFigure)")
  note("  " + pad("observe", 40) + " \(observeFigure)")
  note("  " + pad("decide", 40) + " \(decideFigure)")
  note("  " + pad("agent cycleWithoutActing", 40) + " \(agentFigure)")
  note(String(format: "  log + metrics + status (agent - observe - decide)  mean %7.3f ms", restMean))

  // Steady state: real seconds at the policy interval, sleeping between cycles
  // until the next tick as Agent.run does. Process CPU (every thread), minus
  // this thread's CPU spent sending the test traffic; the cycles' own share
  // (this thread's clock) is kept apart, so what the sleeping costs shows.
  var steadyPercent: Double? = nil
  var steadyWall = 0.0
  var steadyCycleCPU = 0.0
  /// One bare dump a tick, taken between the sleeping loop's cycles (mean, ms).
  var coldFloorCPU = 0.0
  if steadySeconds > 0 {
    note("steady: \(steadySeconds) s at a \(policy.intervalSeconds) s interval ...")
    let clock = ContinuousClock()
    let interval = Duration.milliseconds(Int(policy.intervalSeconds * 1000))
    var trafficCost = 0.0
    let startCPU = cpuMilliseconds(thread: false)
    let start = clock.now
    var next = start
    func sleep(until t: ContinuousClock.Instant) {
      let left = t - clock.now
      if left > .zero { Thread.sleep(forTimeInterval: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18) }
    }
    let rounds = Int((Double(steadySeconds) / policy.intervalSeconds).rounded())
    for _ in 0..<rounds {
      trafficCost += try cpu { try traffic() }
      steadyCycleCPU += try cpu { try agentCycle() }
      tick += 1
      // Half-way to the next tick, the floor as the sleeping agent meets it:
      // one bare dump after a pause, its caches as cold as the cycle's.
      sleep(until: next + interval / 2)
      coldFloorCPU += try cpu { _ = try floor.dump(.getStats) }
      next = next + interval
      sleep(until: next)
    }
    coldFloorCPU /= Double(max(1, rounds))
    steadyWall = Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
    let used = cpuMilliseconds(thread: false) - startCPU - trafficCost - coldFloorCPU * Double(rounds)
    steadyPercent = used / (steadyWall * 1000) * 100
    note(String(format: "  process CPU %.1f ms over %.2f s (traffic's %.2f ms and the cold floor dumps taken out; the cycles' own %.1f ms): %.3f %% of a core",
                used, steadyWall, trafficCost, steadyCycleCPU, steadyPercent!))
    note(String(format: "  bare dump between the cycles, after a pause: %.3f ms (%.3f %% of a core at this interval); the cycle after a pause %.3f ms, %.2fx it",
                coldFloorCPU, coldFloorCPU / (policy.intervalSeconds * 1000) * 100, steadyCycleCPU / Double(max(1, rounds)),
                steadyCycleCPU / Double(max(1, rounds)) / coldFloorCPU))
  }
  let mem = memory()

  // The agent itself, from outside: its whole process, every thread.
  var agentProcess: AgentProcessFigures? = nil
  if agentSeconds > 0 {
    agentProcess = try measureAgentProcess(domains: domains, policyFile: policyFile, poolTotals: poolTotals, traffic: traffic)
  }

  // The naive agent: one /proc/net/dev scan per VM, for every VM.
  note("naive agent: per-VM /proc/net/dev lookup for \(vmCount) VMs ...")
  var naiveCPU: [Double] = []
  for _ in 0..<naiveRounds {
    var found = 0
    naiveCPU.append(cpu { for vm in domains where perInterfaceLookup(vm.nics[0].hostDevice!) != nil { found += 1 } })
    guard found == vmCount else { throw BenchError(description: "per-VM lookup found \(found) of \(vmCount)") }
  }
  let naive = Figure(naiveCPU)
  note("  " + pad("per-VM lookup, all VMs", 40) + " \(naive)")

  // The headline: getrusage summed over all the cycles (and all the dumps) / N.
  let cycleUsage = rusageMean("cycle"), floorUsage = rusageMean("floor")
  let cycleVsFloor = cycleUsage / floorUsage
  let cycleVsFloorMedian = cycleFigure.median / floorFigure.median
  let fromCycle = cycleUsage / (policy.intervalSeconds * 1000) * 100
  // What reading the counters costs the kernel alone at this interval: no agent goes below it.
  let floorPercent = floorUsage / (policy.intervalSeconds * 1000) * 100
  let floorAfterPausePercent = coldFloorCPU / (policy.intervalSeconds * 1000) * 100

  result["traffic"] = "\(hotCount) hot VMs get 1-8 frames of 1000 bytes per cycle (AF_PACKET on their veth, untimed); \(trafficFrames) frames in all; the other VMs' counters idle"
  result["cycle_cpu_ms"] = cycleUsage
  result["cycle_cpu_clock_mean_ms"] = cycleFigure.mean
  result["cycle_cpu_clock_median_ms"] = cycleFigure.median
  result["getstats_bare_dump_cpu_ms"] = floorUsage
  result["getstats_bare_dump_cpu_clock_mean_ms"] = floorFigure.mean
  result["getstats_bare_dump_cpu_clock_median_ms"] = floorFigure.median
  result["cycle_vs_bare_dump_ratio"] = cycleVsFloor
  result["cycle_vs_bare_dump_clock_mean_ratio"] = cycleFigure.mean / floorFigure.mean
  result["cycle_vs_bare_dump_clock_median_ratio"] = cycleVsFloorMedian
  result["read_cpu_ms"] = readFigure.mean
  result["observe_cpu_ms"] = observeFigure.mean
  result["decide_cpu_ms"] = decideFigure.mean
  result["agent_observe_and_decide_cpu_ms"] = agentFigure.mean
  result["log_metrics_status_cpu_ms"] = restMean
  result["steady_cpu_percent_from_cycle"] = fromCycle
  result["steady_cpu_percent_bare_dump"] = floorPercent
  result["steady_cpu_percent_bare_dump_after_pause"] = floorAfterPausePercent
  result["bare_dump_after_pause_cpu_ms"] = coldFloorCPU
  result["steady_cpu_percent_measured"] = steadyPercent ?? NSNull()
  result["steady_seconds"] = steadyWall
  result["steady_cycles_cpu_ms"] = steadyCycleCPU
  result["bench_process_rss_mb"] = mem.rss
  result["bench_process_rss_peak_mb"] = mem.peak
  if let a = agentProcess {
    result["agent_process"] = a.what
    result["agent_rss_mb"] = a.rss
    result["agent_rss_peak_mb"] = a.peak
    result["agent_rss_anon_mb"] = a.anon
    result["agent_rss_file_mb"] = a.file
    result["agent_rss_at_start_mb"] = a.rssAtStart
    result["agent_steady_cpu_percent"] = a.cpuPercent
    result["agent_steady_seconds"] = a.seconds
    result["agent_threads"] = a.threads
  }
  // The target is the agent's: `vfshift run` when it could be measured, else
  // this process, which holds the same agent code and more (a second engine
  // state, the floor's buffer, the traffic).
  let rss = agentProcess?.rss ?? mem.rss
  result["rss_mb"] = rss
  result["rss_of"] = agentProcess == nil ? "bench-agent process" : "vfshift run process"
  result["rss_peak_mb"] = agentProcess?.peak ?? mem.peak
  result["naive_per_vm_lookup_all_vms_cpu_ms"] = naive.mean
  result["naive_vs_cycle_ratio"] = naive.mean / cycleUsage
  result["naive_vs_read_ratio"] = naive.mean / readFigure.mean
  result["planned_swaps"] = actions
  result["log_lines"] = log.lines.withLock { $0 }
  result["target_cycle_vs_bare_dump_max_ratio"] = 1.3
  result["target_steady_cpu_percent_max"] = 0.3
  result["target_rss_mb_max"] = 32
  let steadyWorst = max(fromCycle, steadyPercent ?? 0, agentProcess?.cpuPercent ?? 0)
  result["targets_met"] = cycleVsFloor <= 1.3 && steadyWorst <= 0.3 && rss <= 32

  func yes(_ ok: Bool) -> String { ok ? "met" : "MISSED" }
  print("")
  print("one agent cycle, \(vmCount) VMs / \(first.count) interfaces, policy \(policy.name), CPU time user + system (release build)")
  print("(getrusage: user + system summed over all N and divided; clock: CLOCK_THREAD_CPUTIME_ID per call)")
  print(pad("what", 46) + " getrusage  clock mean  clock median")
  func row(_ what: String, _ f: Figure, usage: Double? = nil, _ tail: String = "") {
    print(pad(what, 46) + (usage.map { String(format: "%7.3f ms", $0) } ?? "          ")
          + String(format: " %8.3f ms %10.3f ms", f.mean, f.median) + (tail.isEmpty ? "" : "  " + tail))
  }
  row("bare RTM_GETSTATS dump (kernel floor)", floorFigure, usage: floorUsage)
  row("agent cycle", cycleFigure, usage: cycleUsage,
      String(format: "%.2fx the floor (median %.2fx; target <= 1.30x: %@)", cycleVsFloor, cycleVsFloorMedian, yes(cycleVsFloor <= 1.3)))
  row("  read (HostCounterReader, netlink)", readFigure)
  row("  observe", observeFigure)
  row("  decide", decideFigure)
  print(pad("  log + metrics + status file", 46) + "          " + String(format: " %8.3f ms", restMean))
  row("naive: per-VM /proc/net/dev lookup x \(vmCount)", naive, String(format: "%.0fx the agent cycle", naive.mean / cycleUsage))
  print(String(format: "steady CPU at a %.0f s interval: %.3f %% of a core from the cycle, %.3f %% measured over %.1f s; the bare dump alone %.3f %% back to back, %.3f %% once a tick after a pause (target <= 0.3 %%: %@)",
               policy.intervalSeconds, fromCycle, steadyPercent ?? .nan, steadyWall, floorPercent,
               floorAfterPausePercent, yes(steadyWorst <= 0.3)))
  if let a = agentProcess {
    print(String(format: "vfshift run (%@): %.3f %% of a core over %.1f s, %d threads (target <= 0.3 %%: %@)",
                 a.what, a.cpuPercent, a.seconds, a.threads, yes(a.cpuPercent <= 0.3)))
    print(String(format: "vfshift run RSS %.1f MB (peak %.1f MB; anonymous %.1f MB, files %.1f MB; %.1f MB when start-up was over) (target <= 32 MB: %@)",
                 a.rss, a.peak, a.anon, a.file, a.rssAtStart, yes(a.rss <= 32)))
  }
  print(String(format: "bench-agent process RSS %.1f MB (peak %.1f MB; %.1f MB at start, before the namespace and inventory)%@",
               mem.rss, mem.peak, startMemory.rss,
               agentProcess == nil ? String(format: " (target <= 32 MB: %@)", yes(mem.rss <= 32)) : ""))
  print("planned swaps: \(actions) (none carried out); log lines: \(log.lines.withLock { $0 })")

  // Off under callgrind (Benchmarks/hot-functions/update): its child process cannot be spawned there.
  if contentionRounds > 0 {
    let vcpus = 4 * vmCount
    let contention = try measureContentionRead(threads: vcpus, rounds: contentionRounds)
    let nth = everyNthCycle(read: contention.read.mean, cycle: cycleFigure.mean, floor: floorFigure.mean, target: 1.3)
    result["contention_vcpu_threads"] = vcpus
    result["contention_discover_cpu_ms"] = contention.discover.mean
    result["contention_read_cpu_ms"] = contention.read.mean
    result["contention_read_vs_floor_ratio"] = contention.read.mean / floorFigure.mean
    result["contention_cycle_every_cycle_vs_floor_ratio"] = (cycleFigure.mean + contention.read.mean) / floorFigure.mean
    result["contention_read_every_nth_cycle"] = nth ?? -1

    print("")
    print("CPU contention read, \(vcpus) vCPU threads (\(vmCount) VMs x 4) in one process, CLOCK_THREAD_CPUTIME_ID, \(contentionRounds) rounds")
    row("  find vCPU threads by name (per inventory change)", contention.discover)
    row("  read their schedstat (per contention sample)", contention.read,
        String(format: "%.2fx the floor", contention.read.mean / floorFigure.mean))
    print(String(format: "cycle + contention read every cycle: %.2fx the floor; every %@ cycle(s) keeps the cycle <= 1.30x",
                 (cycleFigure.mean + contention.read.mean) / floorFigure.mean, nth.map { "\($0)" } ?? "(no N: the cycle alone is over)"))
    // Side by side: the cycle that reads contention, the ones that do not, and
    // their mean at the agent's N (AgentConfig.contentionEveryNth).
    let agentNth = Double(AgentConfig(policyPath: "").contentionEveryNth)
    let withRead = cycleFigure.mean + contention.read.mean
    let meanAtNth = cycleFigure.mean + contention.read.mean / agentNth
    print(pad("cycle at \(vmCount) VMs x 4 vCPUs, clock mean", 46) + "         ms   x floor  target <= 1.30x")
    for (what, ms) in [("bare RTM_GETSTATS dump (floor)", floorFigure.mean), ("cycle that does not read contention", cycleFigure.mean),
                       ("cycle that reads contention (1 in N)", withRead), ("mean over N = \(Int(agentNth)) cycles (the agent's N)", meanAtNth)] {
      let ratio = ms / floorFigure.mean
      print(pad("  " + what, 46) + String(format: " %10.3f %9.2f  %@", ms, ratio, what.hasPrefix("bare") ? "" : yes(ratio <= 1.3)))
    }
    print(String(format: "every-Nth needed: %@ (reading every cycle is %.2fx the floor); N >= %@ keeps the mean within 1.30x, the agent's %d gives %.2fx",
                 withRead / floorFigure.mean > 1.3 ? "yes" : "no", withRead / floorFigure.mean, nth.map { "\($0)" } ?? "(none)",
                 Int(agentNth), meanAtNth / floorFigure.mean))
    result["contention_cycle_with_read_vs_floor_ratio"] = withRead / floorFigure.mean
    result["contention_cycle_without_read_vs_floor_ratio"] = cycleFigure.mean / floorFigure.mean
    result["contention_agent_every_nth_cycle"] = Int(agentNth)
    result["contention_cycle_mean_at_agent_nth_vs_floor_ratio"] = meanAtNth / floorFigure.mean
    result["contention_every_nth_needed"] = withRead / floorFigure.mean > 1.3
  }
}

/// Before anything of the benchmark's own: the Swift runtime and Foundation.
let startMemory = memory()
result["rss_at_start_mb"] = startMemory.rss
var failed = false
do {
  try benchmark()
} catch {
  note("error: \(error)")
  result["error"] = "\(error)"
  failed = true
}
if givenNamespace == nil { _ = try? run(["ip", "netns", "del", namespaceName]) }
try? FileManager.default.removeItem(at: statusDirectory)
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
exit(failed ? 1 : 0)
