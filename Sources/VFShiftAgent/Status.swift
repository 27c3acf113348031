import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

// What `vfshift status`, the textfile and the metrics read of a cycle.
extension Agent {
  func publish(_ observation: Observation, plan: Plan, poolTotals: [String: Int], now: Instant, news: Bool) {
    // Status for `vfshift status`: in the cycle something new is logged (an
    // action, a hold whose rule changed — not a hold that lasts) or a VM's
    // placement differs from what the file says (a swap that finished after
    // the cycle that decided it, a human's change), else every tenth, so a
    // host of 1,000 VMs does not rewrite it each second; its rows are built
    // only for the cycles that write it.
    let writeStatus = news || cycle % 10 == 0 || placementsChanged(observation)
    var used: [String: Int] = [:]
    for i in observation.vms.indices {
      if case .vf(let p) = observation.vms[i].placement { used[p, default: 0] += 1 }
    }
    for (p, n) in observation.pools { used[p, default: 0] += n.heldByOthers }
    var pools: [String: (capacity: Int, used: Int, cap: Int)] = [:]
    for pool in policy.pools {
      let total = poolTotals[pool.name] ?? 0
      pools[pool.name] = (total, used[pool.name] ?? 0, min(pool.maxInUse ?? total, total))
    }
    metrics.observePools(pools)
    var waiting: [String: Int] = [:]
    for hold in plan.holds where hold.wants == .promote {
      if case .managed(let c) = policy.resolveClass(of: hold.vm), let p = policy.classes[c].pool { waiting[p, default: 0] += 1 }
    }
    metrics.observeWaiting(waiting)
    if let path = config.metricsTextfile { writeAtomically(metrics.render(), to: path) }
    let last = LastCycle(observation: observation, plan: plan,
                         pools: pools.map { .init(name: $0.key, vfs: $0.value.capacity, used: $0.value.used, cap: $0.value.cap) }
                           .sorted { $0.name < $1.name },
                         policy: policy, cycle: cycle, now: now, updatedAt: logTimestamp(),
                         sources: vfSources?.choices ?? [:], pressure: contention.pressure)
    lastCycle.withLock { $0 = last }
    if writeStatus {
      let rows = engine.read { statusRows(observation, plan: plan, policy: policy, state: $0, source: counterSource) }
      writeAtomically(status(last, rows: rows).json, to: config.statusPath)
      statusPlacements.removeAll(keepingCapacity: true)
      for vm in observation.vms { statusPlacements.append(vm.placement) }
    }
  }

  /// Compared in place: no array per cycle on a host of 1,000 VMs.
  private func placementsChanged(_ observation: Observation) -> Bool {
    guard observation.vms.count == statusPlacements.count else { return true }
    for i in observation.vms.indices where observation.vms[i].placement != statusPlacements[i] { return true }
    return false
  }
}

public struct StatusRow: Codable, Sendable {
  public var vm: String
  public var className: String
  public var placement: String
  public var bytesPerSecond: Double?
  public var packetsPerSecond: Double?
  public var intensive: Bool
  public var decision: String
  /// What measured the VM this cycle (`host`, `representor`, `pf`,
  /// `guestAgent`, `unknown`); nil while it has no NIC to read.
  public var counterSource: String?
  /// Why it is `unknown` (each source tried, with its reason).
  public var counterSourceReason: String?
  /// Its vCPU threads' share of runnable time spent waiting for a CPU over
  /// the last contention window (0 to 1); nil until measured.
  public var contention: Double?

  public init(vm: String, className: String, placement: String, bytesPerSecond: Double?, packetsPerSecond: Double?,
              intensive: Bool, decision: String, counterSource: String? = nil, counterSourceReason: String? = nil,
              contention: Double? = nil) {
    self.contention = contention
    self.vm = vm; self.className = className; self.placement = placement; self.bytesPerSecond = bytesPerSecond
    self.packetsPerSecond = packetsPerSecond; self.intensive = intensive; self.decision = decision
    self.counterSource = counterSource; self.counterSourceReason = counterSourceReason
  }
}

public struct AgentStatus: Codable, Sendable {
  public struct Pool: Codable, Sendable { public var name: String; public var vfs: Int; public var used: Int; public var cap: Int }
  public var policy: String
  public var dryRun: Bool
  public var pid: Int
  public var cycle: Int
  public var intervalSeconds: Double
  public var updatedAt: String
  public var pools: [Pool]
  public var vms: [StatusRow]
  /// The host's CPU pressure (PSI some, 0 to 1) over 10, 60 and 300 s; nil without PSI.
  public struct Pressure: Codable, Sendable, Equatable { public var avg10: Double; public var avg60: Double; public var avg300: Double }
  public var cpuPressure: Pressure?
}

extension AgentStatus {
  /// The status as JSON that `JSONDecoder` reads back into the same value
  /// (nil rates left out, as JSONEncoder does). Written by hand: at 1,000 VMs
  /// JSONEncoder took ~60 ms per write, most of the agent's steady CPU (bench-agent).
  package var json: [UInt8] {
    var out = JSONOutput(capacity: 256 + vms.count * 192)
    out.raw("{\"policy\":"); out.string(policy)
    out.raw(",\"dryRun\":"); out.bool(dryRun)
    out.raw(",\"pid\":"); out.int(pid)
    out.raw(",\"cycle\":"); out.int(cycle)
    out.raw(",\"intervalSeconds\":")
    if intervalSeconds.isFinite { out.number(intervalSeconds) } else { out.raw("0") }
    out.raw(",\"updatedAt\":"); out.string(updatedAt)
    if let p = cpuPressure, p.avg10.isFinite, p.avg60.isFinite, p.avg300.isFinite {
      out.raw(",\"cpuPressure\":{\"avg10\":"); out.number(p.avg10)
      out.raw(",\"avg60\":"); out.number(p.avg60)
      out.raw(",\"avg300\":"); out.number(p.avg300); out.raw("}")
    }
    out.raw(",\"pools\":[")
    for (i, p) in pools.enumerated() {
      if i > 0 { out.raw(",") }
      out.raw("{\"name\":"); out.string(p.name)
      out.raw(",\"vfs\":"); out.int(p.vfs)
      out.raw(",\"used\":"); out.int(p.used)
      out.raw(",\"cap\":"); out.int(p.cap)
      out.raw("}")
    }
    out.raw("],\"vms\":[")
    for i in vms.indices {
      if i > 0 { out.raw(",") }
      out.raw("{\"vm\":"); out.string(vms[i].vm)
      out.raw(",\"className\":"); out.string(vms[i].className)
      out.raw(",\"placement\":"); out.string(vms[i].placement)
      if let b = vms[i].bytesPerSecond, b.isFinite { out.raw(",\"bytesPerSecond\":"); out.number(b) }
      if let p = vms[i].packetsPerSecond, p.isFinite { out.raw(",\"packetsPerSecond\":"); out.number(p) }
      out.raw(",\"intensive\":"); out.bool(vms[i].intensive)
      out.raw(",\"decision\":"); out.string(vms[i].decision)
      if let c = vms[i].counterSource { out.raw(",\"counterSource\":"); out.string(c) }
      if let r = vms[i].counterSourceReason { out.raw(",\"counterSourceReason\":"); out.string(r) }
      if let c = vms[i].contention, c.isFinite { out.raw(",\"contention\":"); out.number(c) }
      out.raw("}")
    }
    out.raw("]}")
    return out.bytes
  }
}
