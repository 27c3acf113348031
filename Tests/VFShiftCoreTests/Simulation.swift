import VFShiftCore

/// Drives the engine the way the agent does, one cycle per `step`, with VMs
/// whose traffic the test sets and placements that follow the plan at once.
struct Simulation {
  var policy: Policy
  var state = EngineState()
  var now = Instant(seconds: 0)
  var vms: [VMIdentity]
  var placement: [String: Placement] = [:]
  var counters: [String: VMCounters] = [:]
  var source: [String: String] = [:]
  var unknown: Set<String> = []
  /// VMs whose sample is missed this cycle (a stale reading).
  var stale: Set<String> = []
  /// VMs whose swaps fail: their placement stays as it was.
  var failing: Set<String> = []
  /// VMs' CPU contention as the agent would observe it; a VM not named is not measured.
  var contention: [String: Double] = [:]
  /// How the driver tells the engine what became of each action (the agent's
  /// part after acting); nil = the engine is told nothing.
  var report: (@Sendable (inout EngineState, Action, _ succeeded: Bool, Instant) -> Void)?
  var poolSizes: [String: Int]
  var heldByOthers: [String: Int] = [:]
  var log: [(at: Double, action: Action)] = []

  init(policy: Policy, vms: [(name: String, label: String?)], poolSizes: [String: Int]) {
    self.policy = policy
    self.vms = vms.map { VMIdentity(uuid: "uuid-\($0.name)", name: $0.name, label: $0.label) }
    self.poolSizes = poolSizes
    for vm in self.vms {
      placement[vm.name] = .virtio
      counters[vm.name] = VMCounters(rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0)
      source[vm.name] = "vnet-\(vm.name)"
    }
  }

  /// Advances `seconds` one-second cycles, each VM moving the given bytes/s
  /// (and packets/s) — a VM not named is idle.
  @discardableResult
  mutating func run(_ seconds: Int, bytes: [String: Double] = [:], packets: [String: Double] = [:]) -> [Action] {
    var actions: [Action] = []
    for _ in 0..<seconds { actions += step(bytes: bytes, packets: packets).actions }
    return actions
  }

  mutating func step(bytes: [String: Double] = [:], packets: [String: Double] = [:]) -> Plan {
    now = now + 1
    var observations: [VMObservation] = []
    for vm in vms {
      var c = counters[vm.name]!
      c.rxBytes += UInt64(bytes[vm.name] ?? 0)
      c.rxPackets = c.rxPackets.map { $0 + UInt64(packets[vm.name] ?? 0) }
      counters[vm.name] = c
      let reading: CounterReading = unknown.contains(vm.name) ? .unknown
        : stale.contains(vm.name) ? .stale
        : .known(source: source[vm.name]!, counters: c, at: now)
      observations.append(VMObservation(identity: vm, placement: placement[vm.name]!, reading: reading,
                                        contention: contention[vm.name]))
    }
    let pools = poolSizes.mapValues { PoolCapacity(total: $0) }.merging(
      heldByOthers.map { ($0.key, PoolCapacity(total: poolSizes[$0.key] ?? 0, heldByOthers: $0.value)) }) { $1 }
    let plan = decide(&state, policy: policy, observation: Observation(vms: observations, pools: pools), now: now)
    for action in plan.actions {
      log.append((now.seconds, action))
      let fails = failing.contains(action.vm.name)
      report?(&state, action, !fails, now)
      if fails { continue }
      switch action {
      case .promote(let vm, let pool, _): placement[vm.name] = .vf(pool: pool)
      case .demote(let vm, _, _): placement[vm.name] = .virtio
      }
    }
    return plan
  }

  /// The agent stopped and started again: the engine's memory is gone, the
  /// VMs stay where they are.
  mutating func restart() { state = EngineState() }

  /// The rules of this cycle's holds, by VM.
  func holds(_ plan: Plan) -> [String] { plan.holds.map { "\($0.vm.name): \($0.reason.rule)" } }

  var onVF: [String] {
    vms.map(\.name).filter { if case .vf = placement[$0]! { true } else { false } }
  }
}

extension Policy {
  /// A two-class policy in the paper's shape, with round numbers that make
  /// the table rows easy to read: promote at 10 MB/s for 5 s, let go under
  /// 2 MB/s for 10 s, dwell 30 s, cooldown 10 s, margin 25 %.
  static func fixture(cap: Int? = nil, dwell: Double = 30, cooldown: Double = 10, margin: Double = 0.25,
                      perCycle: Int = 4, perHour: Int = 100, contentionWeight: Double = 0,
                      promoteUnderContention: ContentionRelief? = nil) -> Policy {
    Policy(name: "fixture", smoothingHalfLifeSeconds: 0,
           pools: [VFPool(name: "p", network: "pool", maxInUse: cap)],
           classes: [
            QoSClass(name: "high", priority: 100, match: ClassMatch(metadata: ["high"]), vf: .eligible, pool: "p",
                     promote: RateThreshold(bytesPerSecond: 10e6, packetsPerSecond: 10_000, sustainSeconds: 5),
                     demote: RateThreshold(bytesPerSecond: 2e6, packetsPerSecond: 2_000, sustainSeconds: 10),
                     contentionWeight: contentionWeight, promoteUnderContention: promoteUnderContention),
            QoSClass(name: "low", priority: 10, match: ClassMatch(metadata: ["low"]), vf: .never),
            QoSClass(name: "pinned", priority: 50, match: ClassMatch(metadata: ["pinned"]), vf: .always, pool: "p"),
           ],
           antiFlap: AntiFlap(minDwellSeconds: dwell, cooldownSeconds: cooldown, challengerMargin: margin,
                              maxSwapsPerCycle: perCycle, maxSwapsPerVMPerHour: perHour))
  }
}

func names(_ actions: [Action]) -> [String] {
  actions.map { "\($0.verb) \($0.vm.name)" }
}
