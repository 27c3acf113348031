/// The replay's actuator, the third beside the agent's libvirt and dry run:
/// a plan applied to the simulated placements, each swap taken to succeed at
/// once. Synchronous, and a Core type rather than the agent's `Actuator`
/// because Core (and so `whatif`) may not import the agent.
struct ReplayActuator {
  private(set) var placement: [Placement]
  private(set) var vfsInUse = 0
  private let vmIndex: [String: Int32]

  init(_ vms: [VMIdentity]) {
    placement = Array(repeating: .virtio, count: vms.count)
    vmIndex = Dictionary(vms.enumerated().map { ($1.uuid, Int32($0)) }, uniquingKeysWith: { a, _ in a })
  }

  func isOnVF(_ v: Int) -> Bool { if case .vf = placement[v] { true } else { false } }

  /// A VM that leaves gives its VF back (its domain stopped).
  mutating func leave(_ v: Int) {
    if isOnVF(v) { vfsInUse -= 1 }
    placement[v] = .virtio
  }

  /// Carries out the plan: the actions done, each with its VM's index in the
  /// trace (actions on VMs the trace does not know are dropped).
  mutating func apply(_ plan: Plan) -> [(action: Action, vm: Int)] {
    var applied: [(action: Action, vm: Int)] = []
    for action in plan.actions {
      guard let v = vmIndex[action.vm.uuid].map(Int.init) else { continue }
      let wasOnVF = isOnVF(v)
      if case .promote = action {
        placement[v] = .vf(pool: action.pool)
        if !wasOnVF { vfsInUse += 1 }
      } else {
        placement[v] = .virtio
        if wasOnVF { vfsInUse -= 1 }
      }
      applied.append((action, v))
    }
    return applied
  }
}

/// The policy's world cycle by cycle: who is present, what each placement
/// is, and the observation `decide` sees, kept up to date in place.
struct ReplaySimulator {
  var actuator: ReplayActuator
  var observation: Observation
  /// The trace's VM indexes in the observation's order.
  private(set) var present: [Int32] = []
  /// Which of the present VMs had a sample this cycle.
  var sampled: [Bool] = []

  init(_ vms: [VMIdentity], pools: [String: PoolCapacity]) {
    actuator = ReplayActuator(vms)
    observation = Observation(vms: [], pools: pools)
  }

  /// Takes in the cycle's present VMs; true when who is present changed, as
  /// the VM list is rebuilt only then.
  mutating func enter(_ now: [Int32], vms: [VMIdentity]) -> Bool {
    guard now != present else { return false }
    let staying = Set(now)
    for v in present where !staying.contains(v) { actuator.leave(Int(v)) }
    // A VM that stays keeps its contention: live, the figure of the last
    // window stands until the next, whatever else changed on the host.
    var kept: [Int32: Double] = [:]
    for (v, vm) in zip(present, observation.vms) where staying.contains(v) { kept[v] = vm.contention }
    present = now
    observation.vms = present.map {
      VMObservation(identity: vms[Int($0)], placement: actuator.placement[Int($0)], reading: .stale, contention: kept[$0])
    }
    sampled = Array(repeating: false, count: present.count)
    return true
  }

  /// Applies the plan through the actuator; the observation follows the
  /// placement only where it changed.
  mutating func apply(_ plan: Plan) -> [(action: Action, vm: Int)] {
    let applied = actuator.apply(plan)
    for (_, v) in applied {
      if let slot = present.firstIndex(of: Int32(v)) { observation.vms[slot].placement = actuator.placement[v] }
    }
    return applied
  }
}
