import Testing
import VFShiftCore

/// The rules of issue #11 that need the engine to hear what became of a swap,
/// and the replay's side of them.

extension Simulation {
  /// The agent's part after acting: it tells the engine each outcome.
  mutating func reportingOutcomes() {
    report = { state, action, succeeded, now in state.swapFinished(uuid: action.vm.uuid, succeeded: succeeded, now: now) }
  }
}

@Test("forced moves that fail back off exponentially, capped, and say so in their hold",
      arguments: ["low", "wrong pool"])
func forcedBackoff(_ why: String) {
  var policy = Policy.fixture(perHour: 100)
  policy.pools.append(VFPool(name: "q", network: "pool-q"))
  var sim = Simulation(policy: policy, vms: [("a", why == "low" ? "low" : "high")], poolSizes: ["p": 1, "q": 1])
  sim.placement["a"] = .vf(pool: why == "low" ? "p" : "q")
  sim.failing = ["a"]
  sim.reportingOutcomes()
  var rules: Set<String> = []
  for _ in 0..<3600 { rules.formUnion(sim.step().holds.map(\.reason.rule)) }
  // 10 s, doubling, at most 600 s between tries.
  #expect(sim.log.map(\.at) == [1, 11, 31, 71, 151, 311, 631, 1231, 1831, 2431, 3031])
  #expect(rules == ["backoff"])
}

@Test("after repeated failures a forced move keeps to the hourly budget; a success clears the count")
func forcedBackoffHourly() {
  var sim = Simulation(policy: .fixture(perHour: 4), vms: [("a", "low")], poolSizes: ["p": 1])
  sim.placement["a"] = .vf(pool: "p")
  sim.failing = ["a"]
  sim.reportingOutcomes()
  var rules: Set<String> = []
  for _ in 0..<3600 { rules.formUnion(sim.step().holds.map(\.reason.rule)) }
  #expect(sim.log.map(\.at) == [1, 11, 31, 71])
  #expect(rules == ["backoff", "hourly-budget"])
  sim.failing = []
  sim.run(10)
  #expect(sim.log.map(\.at).last == 3601)
  #expect(sim.onVF.isEmpty)
}

@Test("over the cap: a shed that fails backs off too")
func overCapBackoff() {
  var sim = Simulation(policy: .fixture(cap: 1), vms: [("a", "pinned"), ("b", "pinned")], poolSizes: ["p": 2])
  sim.placement["a"] = .vf(pool: "p"); sim.placement["b"] = .vf(pool: "p")
  sim.failing = ["a", "b"]
  sim.reportingOutcomes()
  sim.run(100)
  // a's shed fails at 1; while a backs off b is shed instead, and fails too.
  #expect(sim.log.map(\.at) == [1, 2, 11, 12, 31, 32, 71, 72])
}

@Test("a displacement whose demote fails never promotes the challenger onto a VF that was not freed")
func displacementWaitsForDemote() {
  var sim = Simulation(policy: .fixture(dwell: 10, margin: 0.25), vms: [("a", "high"), ("b", "high")], poolSizes: ["p": 1])
  sim.reportingOutcomes()
  sim.run(6, bytes: ["a": 20e6])
  sim.failing = ["a"]
  sim.run(120, bytes: ["a": 20e6, "b": 26e6])
  #expect(names(sim.log.map(\.action)).contains("demote a"))
  #expect(!names(sim.log.map(\.action)).contains("promote b"))
  #expect(sim.onVF == ["a"])
}

@Test("the metric's count: VMs on a VF of the pool held as not measured")
func unmeasuredCount() {
  var sim = Simulation(policy: .fixture(dwell: 0), vms: [("a", "high"), ("b", "high")], poolSizes: ["p": 2])
  sim.run(10, bytes: ["a": high, "b": high])
  #expect(sim.state.unmeasuredOnVF.map { "\($0.pool)=\($0.vms)" } == ["p=0"])
  sim.unknown = ["a"]
  sim.step(bytes: ["b": high])
  #expect(sim.state.unmeasuredOnVF.map { "\($0.pool)=\($0.vms)" } == ["p=1"])
}

// MARK: replay

/// A trace of `vms` (name, label) sampled every `interval` seconds; `bytes`
/// gives each VM's bytes/s in each cycle (nil = a `?` sample).
func makeTrace(interval: Double, vfs: Int, vms: [(String, String?)], cycles: Int,
               present: (Int, Int) -> Bool = { _, _ in true }, bytes: (Int, Int) -> Double?) -> Trace {
  var trace = Trace(intervalSeconds: interval, poolSizes: ["p": vfs])
  trace.vms = vms.map { VMIdentity(uuid: "u-\($0.0)", name: $0.0, label: $0.1) }
  var total = [UInt64](repeating: 0, count: vms.count)
  for k in 0..<cycles {
    let at = Instant(seconds: Double(k + 1) * interval)
    let start = trace.samples.count
    var here: [Int32] = []
    for v in vms.indices where present(v, k) {
      here.append(Int32(v))
      guard let b = bytes(v, k) else { trace.samples.append(TraceSample(vm: Int32(v), reading: .unknown)); continue }
      total[v] += UInt64(b * interval)
      trace.samples.append(TraceSample(vm: Int32(v), reading: .known(source: "vnet\(v)",
        counters: VMCounters(rxBytes: total[v], txBytes: 0, rxPackets: 0, txPackets: 0), at: at)))
    }
    trace.cycles.append(TraceCycle(at: at, samples: start..<trace.samples.count, present: here))
  }
  return trace
}

@Test("replay: on a 300 s trace a swap back at the first cycle the dwell allows is a flap")
func flapAtNextCycle() {
  let trace = makeTrace(interval: 300, vfs: 1, vms: [("a", "high")], cycles: 8) { _, k in k == 1 ? 20e6 : 0 }
  let report = replay(trace, policy: .fixture(dwell: 600, cooldown: 0))
  #expect(report.swaps.map { "\($0.verb) \(fmtS($0.at.seconds))" } == ["promote 600", "demote 1200"])
  #expect(report.flaps == 1)
}

@Test("replay: swaps per VM per 10 min divides by the time managed VMs were present")
func swapsPerManagedVM() {
  // a: busy, promoted once, present 600 s; b: managed, present for one 60 s
  // interval; u: unmanaged, never counted.
  let trace = makeTrace(interval: 60, vfs: 1, vms: [("a", "high"), ("b", "high"), ("u", nil)], cycles: 11,
                        present: { v, k in v != 1 || k < 2 }) { v, _ in v == 0 ? 20e6 : 0 }
  let report = replay(trace, policy: .fixture())
  #expect(report.swapCount == 1)
  #expect(abs(report.swapsPerVMPer10Min - 1 / (660.0 / 600)) < 1e-9)
}

@Test("replay: the reactive bound rides last interval's busiest, so traffic that alternates every interval escapes it")
func reactiveBound() throws {
  let trace = makeTrace(interval: 60, vfs: 1, vms: [("a", "high"), ("b", "high")], cycles: 60) { v, k in
    (k + v) % 2 == 0 ? 20e6 : 0
  }
  let report = replay(trace, policy: .fixture())
  let oracle = try #require(report.oracleEligibleVFByteShare), reactive = try #require(report.reactiveEligibleVFByteShare)
  #expect(oracle == 1)
  #expect(reactive == 0)
}

@Test("replay: steady traffic, the reactive bound is all but the first interval; never above the oracle on the bundled traces")
func reactiveBoundSteady() throws {
  let trace = makeTrace(interval: 60, vfs: 1, vms: [("a", "high"), ("b", "high")], cycles: 11) { v, _ in v == 0 ? 20e6 : 1e6 }
  let report = replay(trace, policy: .fixture())
  let reactive = try #require(report.reactiveEligibleVFByteShare)
  #expect(abs(reactive - 9 * 20e6 / (10 * 21e6)) < 1e-9)
  for name in ["bitbrains-8vm", "paper-8vm"] {
    for policy in ["paper-multinetwork", "general"] {
      let r = replay(try bundledTrace(name), policy: try bundled(policy))
      let reactive = try #require(r.reactiveEligibleVFByteShare), oracle = try #require(r.oracleEligibleVFByteShare)
      #expect(reactive <= oracle + 1e-9, "\(name) \(policy)")
    }
  }
}

@Test("replay: a `?` sample for a VM on a VF is unknown, as live: held, not demoted, not ranked on its old rate")
func replayUnknownOnVF() {
  let trace = makeTrace(interval: 60, vfs: 1, vms: [("a", "high"), ("b", "high")], cycles: 40) { v, k in
    v == 0 ? (k < 5 ? 12e6 : nil) : (k < 10 ? 0 : 20e6)
  }
  let report = replay(trace, policy: .fixture(dwell: 0))
  #expect(report.swaps.map { "\($0.verb) \($0.vm)" } == ["promote a"])
}

private func fmtS(_ d: Double) -> String { String(Int(d)) }

@Test("a guest that does not take its new NIC: every move of the VM is held 30 s, doubling to 10 min, with the reason; a swap that works clears it")
func guestRefusalHoldOff() {
  // Pinned, so nothing but the refusal (no cooldown, no dwell) decides when it is tried again.
  var sim = Simulation(policy: .fixture(perHour: 1000), vms: [("a", "pinned")], poolSizes: ["p": 1])
  sim.failing = ["a"]
  sim.report = { state, action, succeeded, now in
    state.swapFinished(uuid: action.vm.uuid, succeeded: succeeded, now: now)
    if !succeeded { state.guestRefused(uuid: action.vm.uuid, now: now) }
  }
  var reasons: [Reason] = []
  for _ in 0..<1300 { reasons += sim.step().holds.map(\.reason) }
  // 30 s, 60, 120, 240, 480, then 600 s between tries.
  #expect(sim.log.map(\.at) == [1, 31, 91, 211, 451, 931])
  #expect(Set(reasons.map(\.rule)) == ["guest-refused"], "not the forced move's backoff: the refusal says why")
  #expect(reasons.first == .guestRefused(times: 1, remainingSeconds: 29))
  #expect(reasons.first?.description == "the guest did not use the NIC its last swap gave it (29 s left)")
  #expect(reasons.last?.description.hasPrefix("the guest did not use the NIC its last 6 swaps gave it") == true)
  sim.failing = []
  sim.run(700)
  #expect(sim.log.map(\.at).last == 1531 && sim.onVF == ["a"], "tried after the 600 s hold, and it worked")
}

@Test("a refusal a restarted agent restores holds the VM from its first cycle, as the old process would have, and a later one doubles on it")
func restoredGuestRefusal() {
  // Pinned: it would be promoted on the first cycle, no evidence needed.
  var sim = Simulation(policy: .fixture(perHour: 1000), vms: [("a", "pinned")], poolSizes: ["p": 1])
  sim.report = { state, action, succeeded, now in
    state.swapFinished(uuid: action.vm.uuid, succeeded: succeeded, now: now)
    if !succeeded { state.guestRefused(uuid: action.vm.uuid, now: now) }
  }
  let uuid = sim.vms[0].uuid
  // Two refusals by the process before; its hold ends 20 s into this one.
  sim.state.restoreRefusal(uuid: uuid, times: 2, until: Instant(seconds: 20), now: sim.now)
  let first = sim.step()
  #expect(first.actions.isEmpty)
  #expect(first.holds.map(\.reason) == [.guestRefused(times: 2, remainingSeconds: 19)])
  #expect(sim.state.refusal(of: uuid)?.times == 2)
  sim.failing = ["a"]
  sim.run(30)
  // Tried when the restored hold ended; the third refusal holds 120 s, not 30.
  #expect(sim.log.map(\.at) == [20])
  let after = sim.state.refusal(of: uuid)
  #expect(after?.times == 3 && after?.until == Instant(seconds: 140), "\(String(describing: after))")
}

@Test("a restored refusal whose end lies further off than the longest hold (the wall clock set back since) holds no longer than that")
func restoredGuestRefusalCapped() {
  var sim = Simulation(policy: .fixture(perHour: 1000), vms: [("a", "pinned")], poolSizes: ["p": 1])
  sim.state.restoreRefusal(uuid: sim.vms[0].uuid, times: 1, until: Instant(seconds: 86_400), now: sim.now)
  #expect(sim.step().holds.map(\.reason) == [.guestRefused(times: 1, remainingSeconds: GuestRefusal.capSeconds - 1)])
  sim.run(Int(GuestRefusal.capSeconds) - 1)
  #expect(sim.onVF == ["a"], "promoted once the longest hold from the restart is over")
}
