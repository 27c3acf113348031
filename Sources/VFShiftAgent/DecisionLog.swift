import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

// The journal's view of a cycle: a line per action, per hold whose rule
// changed, per VM whose measurement or counter source changed.
extension Agent {
  /// Logs the plan; true when it logged something (an action, a hold whose rule changed).
  @discardableResult
  func report(_ plan: Plan, observation: Observation, now: Instant) -> Bool {
    var news = !plan.actions.isEmpty
    for action in plan.actions {
      let rate = engine.read { $0.rate(of: action.vm.uuid) }
      log.emit("decision", ["vm": .string(action.vm.name), "class": .string(className(action.vm)),
                            "decision": .string(action.verb.rawValue), "pool": .string(action.pool), "rule": .string(action.reason.rule),
                            "reason": .string("\(action.reason)"), "bytesPerSecond": .optional(rate?.bytesPerSecond),
                            "packetsPerSecond": .optional(rate?.packetsPerSecond), "dryRun": .bool(config.dryRun),
                            "t": .number(now.seconds)])
      lastHold[action.vm.uuid] = nil
    }
    // Not measured, and measured again: one line per change, not per cycle.
    var nowUnmeasured: Set<String> = []
    for hold in plan.holds {
      // A baseline (the cycle after a swap or a start) is routine: its hold
      // line says so; unknown and stale readings are what an operator watches
      // (and a baseline after them is not yet "measured again").
      guard case .notMeasured(let why) = hold.reason else { continue }
      if why == .baseline && !unmeasured.contains(hold.vm.uuid) { continue }
      nowUnmeasured.insert(hold.vm.uuid)
      if !unmeasured.contains(hold.vm.uuid) {
        news = true
        log.emit("measurement", ["vm": .string(hold.vm.name), "measured": .bool(false), "why": .string(why.rawValue),
                                 "reason": .string(why.description), "t": .number(now.seconds)])
      }
    }
    if !unmeasured.isEmpty || !nowUnmeasured.isEmpty {
      for uuid in unmeasured where !nowUnmeasured.contains(uuid) {
        // The VM may have left; its name is in the observation when it has not.
        let name = observation.vms.first { $0.identity.uuid == uuid }?.identity.name
        if let name { log.emit("measurement", ["vm": .string(name), "measured": .bool(true), "t": .number(now.seconds)]) }
        if lastHold[uuid] == "not-measured" { lastHold[uuid] = nil }
        news = true
      }
      unmeasured = nowUnmeasured
    }
    // A hold is logged when its rule changes, not every second it lasts.
    for hold in plan.holds where lastHold[hold.vm.uuid] != hold.reason.rule {
      lastHold[hold.vm.uuid] = hold.reason.rule
      news = true
      log.emit("decision", ["vm": .string(hold.vm.name), "class": .string(className(hold.vm)), "decision": "hold",
                            "wants": .string(hold.wants.rawValue), "rule": .string(hold.reason.rule), "reason": .string("\(hold.reason)"),
                            "t": .number(now.seconds)])
    }
    return news
  }

  /// Logs a VM's counter source when it changes (one line, with the reason
  /// for an unknown one) and hands the VF sources to the metrics.
  func reportCounterSources(_ observation: Observation) {
    guard let sources = vfSources else { return }
    var rows: [(vm: String, source: String, reason: String?)] = []
    rows.reserveCapacity(sources.measured.count)
    for m in sources.measured { rows.append((m.name, m.choice.source.rawValue, m.choice.reason)) }
    // Keyed by UUID: only the few VMs on a VF, looked up once each.
    var seen: [String: TrafficSource] = [:]
    for (uuid, choice) in sources.choices {
      seen[uuid] = choice.source
      if lastSource[uuid] != choice.source {
        let name = observation.vms.first { $0.identity.uuid == uuid }?.identity.name ?? uuid
        log.emit("counter-source", ["vm": .string(name), "source": .string(choice.source.rawValue),
                                    "reason": choice.reason.map { .string($0) } ?? .null])
      }
    }
    lastSource = seen
    metrics.observeCounterSources(rows)
  }

  /// Which source measures a VM, and why it is unknown: a VF as its
  /// pool's `counters` decided, a virtio NIC by its host device.
  func counterSource(_ vm: VMObservation) -> (source: String?, reason: String?) {
    counterSource(vm, choices: vfSources?.choices ?? [:])
  }

  func counterSource(_ vm: VMObservation, choices: [String: TrafficSourceChoice]) -> (source: String?, reason: String?) {
    if let choice = choices[vm.identity.uuid] { return (choice.source.rawValue, choice.reason) }
    if case .virtio = vm.placement { return (TrafficSource.host.rawValue, nil) }
    if case .vf = vm.placement, vm.reading.isUnknown { return (TrafficSource.unknown.rawValue, "a VF passed to the guest has no host netdev") }
    if case .vf = vm.placement { return (TrafficSource.host.rawValue, nil) }
    return (nil, nil)
  }

  func className(_ vm: VMIdentity) -> String {
    if case .managed(let c) = policy.resolveClass(of: vm) { return policy.classes[c].name }
    return "-"
  }
}
