import Foundation
import VFShiftCore
import VFShiftAgent
import VFShiftHost

func agentUsage(_ command: String) -> String {
  switch command {
  case "run": "vfshift run --policy FILE [--dry-run] [--interval 1s] [--listen HOST:PORT|off] [--textfile FILE] [--record FILE]"
  case "record": "vfshift record --out FILE --policy FILE [--interval 1s] [--cycles N]"
  case "status": "vfshift status [VM] [--json] [--socket PATH] [--status-file FILE]"
  default: "vfshift <command> [options]"
  }
}

func agentHelp(for command: String) -> String? {
  switch command {
  case "run": """
    OVERVIEW: Run the host agent. Each cycle it observes every running domain's
    NICs (libvirt) and traffic (netlink, else /proc/net/dev), decides under the
    policy which VMs are network-intensive, and swaps them between virtio-net
    and a VF, make before break, journalled in the domain's own metadata.

    USAGE: \(agentUsage(command))

    OPTIONS:
      --policy FILE          The policy (see 'vfshift policy check'). Required.
      --dry-run              Observe and decide, log what would be done, change nothing.
      --interval DURATION    Cycle interval (default: the policy's intervalSeconds).
      --connect URI          libvirt URI (default qemu:///system).
      --listen HOST:PORT     Serve Prometheus metrics at /metrics (default 127.0.0.1:9479; 'off' for none).
      --textfile FILE        Also write the metrics as a node_exporter textfile.
      --status-file FILE     Where 'vfshift status' reads from (default /run/vfshift/status.json).
      --socket PATH          The control socket 'vfshift status' asks (default: control.sock beside
                             the status file; mode 0600, root only).
      --lock-file FILE       One agent per host (default /run/vfshift/agent.lock).
      --record FILE          Also write the observed samples as a trace for 'vfshift whatif'.
      --counters SOURCE      netlink (default) or procNetDev.
      --pool-size POOL=N     VFs of a pool, where libvirt cannot say (repeatable).
      --cycles N             Stop after N cycles (for tests).
      --contention-every N   Read each VM's CPU contention every Nth cycle (default 150; each
                             figure is the share over those N cycles). Lower for tests.

    SIGNALS: SIGHUP reloads the policy (an invalid one is refused, the old one
    keeps running); SIGTERM/SIGINT finish the swap in progress and exit 0.
    Logs: one JSON line per decision and per swap step on stderr.
    Exit status: 0 stopped cleanly, 1 could not start (the error says why), 64 usage.
    """
  case "record": """
    OVERVIEW: Record the live per-VM samples into a trace file, so 'vfshift whatif'
    can replay the host's own traffic. Observes only: decides and changes nothing.
    Each sample carries the VM's CPU contention once it is measured (a trace of
    format version 2, which whatif replays into contention-weighted policies).

    USAGE: \(agentUsage(command))

    OPTIONS:
      --out FILE        The trace to write. Required.
      --policy FILE     The policy whose pools and classes say which NICs count. Required.
      --interval D      Sampling interval (default: the policy's).
      --cycles N        Stop after N samples (default: until SIGINT/SIGTERM).
      --connect URI     libvirt URI (default qemu:///system).
    """
  case "status": """
    OVERVIEW: Show what the running agent sees and decided, per VM, as of its
    last cycle: asked over its control socket (root only), else read from the
    status file it writes every tenth cycle (a note on stderr says so). With
    VM: that VM's decision chain (class, rates and their source, thresholds and
    how long they have held, dwell and cooldown left, rank in its pool, the
    rule that holds it); that needs the running agent.

    USAGE: \(agentUsage(command))

    OPTIONS:
      --json               Print the agent's answer as JSON.
      --socket PATH        The agent's control socket (default: control.sock beside the status file).
      --status-file FILE   Default /run/vfshift/status.json.
    Exit status: 0 shown, 1 no agent status found (or no such VM), 64 usage.
    """
  default: nil
  }
}

func agentCommand(_ command: String, _ argv: [String]) async throws -> ExitCode {
  switch command {
  case "status": return try status(argv)
  default: return try await runAgent(command, argv)
  }
}

func runAgent(_ command: String, _ argv: [String]) async throws -> ExitCode {
  let args = try Arguments(argv, command: command,
    valued: ["--policy", "--interval", "--connect", "--listen", "--textfile", "--status-file", "--socket", "--lock-file", "--record",
             "--counters", "--pool-size", "--cycles", "--out", "--contention-every"],
    flags: ["--dry-run"])
  guard args.positionals.isEmpty else { throw UsageError(message: "unexpected argument '\(args.positionals[0])'", command: command) }
  guard let policyPath = try args.value("--policy") else { throw UsageError(message: "--policy is required", command: command) }
  var config = AgentConfig(policyPath: policyPath)
  config.dryRun = args.flags.contains("--dry-run")
  config.stepHook = faultInjectionFromEnvironment()
  config.intervalSeconds = try args.double("--interval")
  config.uri = try args.value("--connect") ?? config.uri
  config.metricsTextfile = try args.value("--textfile")
  config.statusPath = try args.value("--status-file") ?? config.statusPath
  config.lockPath = try args.value("--lock-file") ?? config.lockPath
  config.controlPath = try args.value("--socket")
  config.maxCycles = try args.int("--cycles")
  if let n = try args.int("--contention-every") {
    guard n >= 1 else { throw UsageError(message: "--contention-every takes N >= 1 (cycles), got \(n)", command: command) }
    config.contentionEveryNth = n
  }
  if let listen = try args.value("--listen") { config.metricsListen = listen == "off" ? nil : listen }
  if let source = try args.value("--counters") {
    guard let s = CounterSource(rawValue: source) else {
      throw UsageError(message: "--counters is \(CounterSource.allCases.map(\.rawValue).joined(separator: " or ")), got '\(source)'", command: command)
    }
    config.counterSource = s
  }
  for pair in args.values("--pool-size") {
    let p = pair.split(separator: "=").map(String.init)
    guard p.count == 2, let n = Int(p[1]), n >= 0 else { throw UsageError(message: "--pool-size takes POOL=N, got '\(pair)'", command: command) }
    config.poolSizes[p[0]] = n
  }
  if command == "record" {
    guard let out = try args.value("--out") else { throw UsageError(message: "--out is required", command: command) }
    config.recordPath = out
    config.recordOnly = true
    config.metricsListen = nil
    config.lockPath = config.lockPath + ".record"
  } else {
    config.recordPath = try args.value("--record")
    if args.options["--out"] != nil { throw UsageError(message: "--out belongs to 'vfshift record'; use --record", command: command) }
  }
  if config.dryRun && command == "record" { throw UsageError(message: "--dry-run has no meaning for record", command: command) }

  let agent: Agent
  do { agent = try Agent(config: config) } catch {
    printErrors(error)
    return .failure
  }
  // Signals arrive on a queue, never interrupting a swap half-way (SIGPIPE:
  // Agent.run ignores it).
  for s in [SIGHUP, SIGTERM, SIGINT] { signal(s, SIG_IGN) }
  var sources: [DispatchSourceSignal] = []
  for (sig, action) in [(SIGHUP, { agent.requestReload() }), (SIGTERM, { agent.requestStop() }), (SIGINT, { agent.requestStop() })] {
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    source.setEventHandler(handler: action)
    source.resume()
    sources.append(source)
  }
  defer { sources.forEach { $0.cancel() } }
  do { try await agent.run() } catch {
    printErrors(error)
    return .failure
  }
  return .ok
}


func status(_ argv: [String]) throws -> ExitCode {
  let args = try Arguments(argv, command: "status", valued: ["--status-file", "--socket"], flags: ["--json"])
  let path = try args.value("--status-file") ?? AgentConfig.defaultStatusPath
  let socket = try args.value("--socket") ?? controlSocketPath(besideStatus: path)
  guard args.positionals.count <= 1 else { throw UsageError(message: "unexpected argument '\(args.positionals[1])'", command: "status") }
  if let vm = args.positionals.first { return try vmStatus(vm, socket: socket, json: args.flags.contains("--json")) }
  let data: Data
  let source: String
  let answer = askAgent(socket: socket, "status")
  if let answer, let refusal = agentError(answer) {
    printError("note: the agent at \(socket) answered: \(refusal); showing \(path)")
    guard let d = FileManager.default.contents(atPath: path) else { printError("error: no agent status at \(path)"); return .failure }
    (data, source) = (d, path)
  } else if let answer {
    (data, source) = (Data(answer), "the agent at \(socket)")
  } else {
    guard let d = FileManager.default.contents(atPath: path) else {
      printError("error: no agent answers at \(socket) and no agent status at \(path): is 'vfshift run' running? (give --status-file if it writes elsewhere)")
      return .failure
    }
    printError("note: no agent answers at \(socket); showing \(path), written every tenth cycle")
    (data, source) = (d, path)
  }
  let s: AgentStatus
  do { s = try JSONDecoder().decode(AgentStatus.self, from: data) } catch {
    printError("error: \(source): not a vfshift status: \(decodingReason(error))")
    return .failure
  }
  if args.flags.contains("--json") { print(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)); return .ok }
  print("vfshift agent pid \(s.pid), policy \(s.policy)\(s.dryRun ? " (dry run)" : ""), cycle \(s.cycle), updated \(s.updatedAt)")
  for p in s.pools { print("pool \(p.name): \(p.used) of \(p.vfs) VFs in use, cap \(p.cap)") }
  if let p = s.cpuPressure {
    print(String(format: "host CPU pressure (PSI some): %.1f %% over 10 s, %.1f %% over 60 s, %.1f %% over 300 s",
                 p.avg10 * 100, p.avg60 * 100, p.avg300 * 100))
  }
  print("")
  var rows = [["VM", "CLASS", "ON", "RATE", "PKT/S", "INTENSIVE", "CPU WAIT", "SOURCE", "DECISION"]]
  for vm in s.vms {
    rows.append([vm.vm, vm.className, vm.placement, vm.bytesPerSecond.map { si($0) + "B/s" } ?? "unknown",
                 vm.packetsPerSecond.map { si($0) } ?? "-", vm.intensive ? "yes" : "no",
                 vm.contention.map { String(format: "%.0f %%", $0 * 100) } ?? "-", vm.counterSource ?? "-", vm.decision])
  }
  let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max() ?? 0 }
  for r in rows {
    print(r.enumerated().map { c, cell in c == r.count - 1 ? cell : cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
      .joined(separator: "  "))
  }
  // Why a VM's source is unknown: too long for a column.
  let unknown = s.vms.filter { $0.counterSourceReason != nil }
  if !unknown.isEmpty {
    print("")
    for vm in unknown { print("\(vm.vm): counters \(vm.counterSource ?? "unknown"): \(vm.counterSourceReason!)") }
  }
  return .ok
}

/// The `error` of an agent's answer, if it is one.
func agentError(_ answer: [UInt8]) -> String? {
  struct Refusal: Decodable { var error: String }
  return (try? JSONDecoder().decode(Refusal.self, from: Data(answer)))?.error
}

/// A decoding error as one line: the field's path and what was wrong.
func decodingReason(_ error: Error) -> String {
  func at(_ path: [CodingKey]) -> String {
    path.isEmpty ? "" : " at " + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
  }
  switch error as? DecodingError {
  case .keyNotFound(let key, let c)?: return "field '\(key.stringValue)' missing\(at(c.codingPath))"
  case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?: return "\(c.debugDescription)\(at(c.codingPath))"
  case .dataCorrupted(let c)?: return "\(c.debugDescription)\(at(c.codingPath))" + ((c.underlyingError).map { " (\($0.localizedDescription))" } ?? "")
  default: return "\(error)"
  }
}

func vmStatus(_ vm: String, socket: String, json: Bool) throws -> ExitCode {
  guard let answer = askAgent(socket: socket, "vm \(vm)") else {
    printError("error: no agent answers at \(socket): a VM's decision chain comes from the running agent (is 'vfshift run' running? give --socket if it listens elsewhere)")
    return .failure
  }
  if let refusal = agentError(answer) { printError("error: the agent at \(socket): \(refusal)"); return .failure }
  let c: VMDecisionChain
  do { c = try JSONDecoder().decode(VMDecisionChain.self, from: Data(answer)) } catch {
    printError("error: the agent at \(socket): not a decision chain: \(decodingReason(error))")
    return .failure
  }
  if json { print(String(decoding: answer, as: UTF8.self).trimmingCharacters(in: .newlines)); return .ok }
  func secs(_ d: Double?) -> String { d.map { "\(($0 * 10).rounded() / 10) s" } ?? "-" }
  func rate(_ b: Double?, _ p: Double?) -> String {
    [b.map { si($0) + "B/s" }, p.map { si($0) + "pkt/s" }].compactMap { $0 }.joined(separator: ", ").nonEmpty ?? "unknown"
  }
  func threshold(_ t: VMDecisionChain.Threshold?, _ past: String) -> String {
    guard let t else { return "-" }
    let limit = rate(t.bytesPerSecond, t.packetsPerSecond)
    let held = t.heldSeconds.map { "\(past) for \(secs($0)) of \(secs(t.sustainSeconds))" } ?? "not \(past) (needs \(secs(t.sustainSeconds)))"
    return "\(limit == "unknown" ? "none" : limit); \(held)"
  }
  let lines: [(String, String)] = [
    ("vm", "\(c.vm) (\(c.uuid))"),
    ("as of", "cycle \(c.cycle), \(c.updatedAt)"),
    ("class", c.className.map { "\($0) (vf: \(c.vf ?? "-"), pool \(c.pool ?? "none"), priority \(c.priority.map(String.init) ?? "-"))" } ?? "none: no class manages it"),
    ("placement", c.placement),
    ("rate source", c.rateSource ?? "none yet"),
    ("rate (last interval)", rate(c.intervalBytesPerSecond, c.intervalPacketsPerSecond)),
    ("rate (smoothed)", rate(c.smoothedBytesPerSecond, c.smoothedPacketsPerSecond)),
    ("intensive", c.intensive ? "yes" : "no"),
    ("intensity", c.intensity.map { "\(($0 * 100).rounded() / 100) × its promote threshold" } ?? "-"),
    ("promote threshold", threshold(c.promote, "above")),
    ("release threshold", threshold(c.demote, "below")),
    ("dwell left", c.onVF ? secs(c.dwellLeftSeconds) : "- (not on a VF)"),
    ("cooldown left", c.cooldownLeftSeconds.map { secs($0) } ?? "- (no swap yet)"),
    ("swaps last hour", "\(c.swapsInLastHour) of \(c.swapsPerHourLimit)"),
    ("rank in pool", c.rank.map { "\($0) of \(c.contenders ?? 0)" } ?? "-"),
    ("decision", c.decision + (c.rule.map { " [\($0)]" } ?? "")),
    ("because", c.reason ?? "-"),
  ]
  let width = lines.map(\.0.count).max() ?? 0
  for (k, v) in lines { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
  return .ok
}

extension String {
  var nonEmpty: String? { isEmpty ? nil : self }
}
