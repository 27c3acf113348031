import Foundation
import Synchronization
import VFShiftCore
import VFShiftHost

/// What the last cycle saw and decided, kept for the control socket: the
/// observation and plan themselves (their arrays shared, not copied), so a
/// `vfshift status` is as current as the last cycle.
struct LastCycle: Sendable {
  var observation: Observation
  var plan: Plan
  var pools: [AgentStatus.Pool]
  var policy: Policy
  var cycle: Int
  var now: Instant
  var updatedAt: String
  /// The cycle's counter-source choices (a copy-on-write reference, not a
  /// copy): the control thread reads these, never the loop's live table.
  var sources: [String: TrafficSourceChoice] = [:]
  var pressure: CPUPressure? = nil
}

/// One VM's decision chain, as `vfshift status VM` prints it.
public struct VMDecisionChain: Codable, Sendable, Equatable {
  public struct Threshold: Codable, Sendable, Equatable {
    public var bytesPerSecond: Double?
    public var packetsPerSecond: Double?
    public var sustainSeconds: Double
    /// How long the rates have been past it, nil when they are not.
    public var heldSeconds: Double?
  }
  public var vm: String
  public var uuid: String
  public var className: String?
  public var vf: String?
  public var pool: String?
  public var priority: Int?
  public var placement: String
  public var onVF: Bool
  public var rateSource: String?
  public var intervalBytesPerSecond: Double?
  public var intervalPacketsPerSecond: Double?
  public var smoothedBytesPerSecond: Double?
  public var smoothedPacketsPerSecond: Double?
  public var intensive: Bool
  public var intensity: Double?
  public var promote: Threshold?
  public var demote: Threshold?
  public var dwellLeftSeconds: Double?
  public var cooldownLeftSeconds: Double?
  public var swapsInLastHour: Int
  public var swapsPerHourLimit: Int
  public var rank: Int?
  public var contenders: Int?
  /// The plan's word on it this cycle: "keep", "promote", "demote" or "hold".
  public var decision: String
  public var rule: String?
  public var reason: String?
  public var cycle: Int
  public var updatedAt: String
}

extension Agent {
  /// The control socket's answer to one request line.
  func controlAnswer(_ line: String) -> [UInt8] {
    guard let last = lastCycle.withLock({ $0 }) else { return controlError("no cycle has run yet") }
    if line == "status" {
      let rows = engine.read { statusRows(last.observation, plan: last.plan, policy: last.policy, state: $0,
                                                          source: { counterSource($0, choices: last.sources) }) }
      return status(last, rows: rows).json + [10]
    }
    if line.hasPrefix("vm ") {
      let name = String(line.dropFirst(3))
      guard let chain = engine.read({ $0.chain(of: name, now: last.now) }) else {
        return controlError("no VM '\(name)' in the last cycle")
      }
      let placement = last.observation.vms.first { $0.identity.uuid == chain.uuid }.map { placementName($0.placement) } ?? "gone"
      var decision = "keep", rule: String?, reason: String?
      if let a = last.plan.actions.first(where: { $0.vm.uuid == chain.uuid }) {
        decision = a.verb.rawValue; rule = a.reason.rule; reason = "\(a.reason)"
      } else if let h = last.plan.holds.first(where: { $0.vm.uuid == chain.uuid }) {
        decision = "hold (wants \(h.wants))"; rule = h.reason.rule; reason = "\(h.reason)"
      }
      func threshold(_ t: RateThreshold?, _ clock: VMChain.Clock?) -> VMDecisionChain.Threshold? {
        t.map { .init(bytesPerSecond: $0.bytesPerSecond, packetsPerSecond: $0.packetsPerSecond, sustainSeconds: $0.sustainSeconds,
                      heldSeconds: clock?.heldSeconds) }
      }
      let out = VMDecisionChain(
        vm: chain.vm, uuid: chain.uuid, className: chain.className, vf: chain.vf, pool: chain.pool, priority: chain.priority,
        placement: placement, onVF: chain.onVF, rateSource: chain.rateSource, intervalBytesPerSecond: chain.intervalBytesPerSecond,
        intervalPacketsPerSecond: chain.intervalPacketsPerSecond, smoothedBytesPerSecond: chain.smoothedBytesPerSecond,
        smoothedPacketsPerSecond: chain.smoothedPacketsPerSecond, intensive: chain.intensive, intensity: chain.intensity,
        promote: threshold(chain.promote, chain.above), demote: threshold(chain.demote, chain.below),
        dwellLeftSeconds: chain.dwellLeftSeconds, cooldownLeftSeconds: chain.cooldownLeftSeconds,
        swapsInLastHour: chain.swapsInLastHour, swapsPerHourLimit: chain.swapsPerHourLimit, rank: chain.rank,
        contenders: chain.contenders, decision: decision, rule: rule, reason: reason, cycle: last.cycle, updatedAt: last.updatedAt)
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      return ((try? encoder.encode(out)).map(Array.init) ?? controlError("cannot encode")) + [10]
    }
    return controlError("unknown request '\(line.prefix(64))' (want 'status' or 'vm NAME')")
  }

  func controlError(_ text: String) -> [UInt8] {
    var out = JSONOutput(capacity: 64 + text.utf8.count)
    out.raw("{\"error\":"); out.string(text); out.raw("}\n")
    return out.bytes
  }

  func status(_ last: LastCycle, rows: [StatusRow]) -> AgentStatus {
    AgentStatus(policy: last.policy.name, dryRun: config.dryRun, pid: processID, cycle: last.cycle,
                intervalSeconds: config.intervalSeconds ?? last.policy.intervalSeconds, updatedAt: last.updatedAt,
                pools: last.pools, vms: rows,
                cpuPressure: last.pressure.map { .init(avg10: $0.avg10, avg60: $0.avg60, avg300: $0.avg300) })
  }
}

func placementName(_ p: Placement) -> String {
  switch p {
  case .virtio: "virtio"
  case .vf(let pool): "vf:\(pool)"
  case .transitioning: "swapping"
  case .none: "none"
  }
}

/// The status rows of one cycle: per VM its class, placement, rates and the
/// plan's word on it. For the status file and the control socket alike.
func statusRows(_ observation: Observation, plan: Plan, policy: Policy, state: EngineState,
                source: (VMObservation) -> (source: String?, reason: String?)) -> [StatusRow] {
  // What the plan says of the few VMs it names, looked up per row instead
  // of searching the plan's lists once per VM.
  var decisions: [String: String] = [:]
  for action in plan.actions where decisions[action.vm.uuid] == nil {
    decisions[action.vm.uuid] = "\(action.verb): \(action.reason)"
  }
  for hold in plan.holds where decisions[hold.vm.uuid] == nil { decisions[hold.vm.uuid] = "hold: \(hold.reason)" }
  var rows: [StatusRow] = []
  rows.reserveCapacity(observation.vms.count)
  for i in observation.vms.indices {
    let identity = observation.vms[i].identity
    let rate = state.rate(of: identity.uuid)
    let className: String = if case .managed(let c) = policy.resolveClass(of: identity) { policy.classes[c].name } else { "-" }
    let measured = source(observation.vms[i])
    rows.append(StatusRow(vm: identity.name, className: className, placement: placementName(observation.vms[i].placement),
                          bytesPerSecond: rate?.bytesPerSecond, packetsPerSecond: rate?.packetsPerSecond,
                          intensive: rate?.intensive ?? false,
                          decision: decisions.isEmpty ? "keep" : decisions[identity.uuid] ?? "keep",
                          counterSource: measured.source, counterSourceReason: measured.reason,
                          contention: observation.vms[i].contention))
  }
  return rows
}

/// The agent's control socket beside a status file (what `vfshift run` uses by default).
public func controlSocketPath(besideStatus statusPath: String) -> String {
  ((statusPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("control.sock")
}

/// Asks the agent on the control socket at `path`; nil when none answers
/// within `timeout` seconds.
public func askAgent(socket path: String, _ request: String, timeout: Double = 2) -> [UInt8]? {
  askUnix(path, Array((request + "\n").utf8), timeout: timeout)
}
