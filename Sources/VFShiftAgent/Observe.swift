import VFShiftCore
import VFShiftLibvirt

/// The NICs of one domain that vfshift cares about under a policy.
public struct ManagedNICs: Sendable, Equatable {
  public var virtio: NIC?
  public var vf: NIC?
  /// The policy pool the VF belongs to.
  public var pool: String?
}

/// Where a domain's managed NICs sit in `domain.nics`, and the index of the
/// VF's policy pool: what `observe` needs for every VM every cycle, found
/// without copying a NIC (each copy retains a dozen strings; at 1,000 VMs that
/// was most of the cycle's own CPU, bench-agent).
struct ManagedNICPositions {
  var virtio: Int?
  var vf: Int?
  var pool: Int?
}

/// Sorts a domain's NICs into its data virtio NIC and its VF (a NIC from one
/// of the policy's pool networks), as `managedNICPositions` (DataNIC.swift)
/// finds them. Other NICs (user, a management bridge) are seen and left alone.
public func managedNICs(_ domain: DomainInventory, policy: Policy) -> ManagedNICs {
  managedNICs(domain, at: managedNICPositions(domain, policy: policy), policy: policy)
}

func managedNICs(_ domain: DomainInventory, at: ManagedNICPositions, policy: Policy) -> ManagedNICs {
  ManagedNICs(virtio: at.virtio.map { domain.nics[$0] }, vf: at.vf.map { domain.nics[$0] },
              pool: at.pool.map { policy.pools[$0].name })
}

/// Builds the engine's view of the world from libvirt's inventory and one
/// counter snapshot. Pure: the agent, its tests and `record` share it.
public func observe(domains: [DomainInventory], counters: CounterSnapshot, policy: Policy,
                    poolTotals: [String: Int], now: Instant, vfSince: [String: Instant] = [:]) -> Observation {
  var positions = DevicePositions()
  return observe(domains: domains, counters: counters, policy: policy, poolTotals: poolTotals, now: now,
                 vfSince: vfSince, positions: &positions)
}

/// `observe` with each VF's traffic read as its pool's `counters` decided
/// (`VFCounterSources.measure`): a VM on a VF missing from `measurements`
/// is unknown.
package func observe(domains: [DomainInventory], counters: CounterSnapshot, policy: Policy,
                     poolTotals: [String: Int], now: Instant, measurements: [String: VFMeasurement]) -> Observation {
  var positions = DevicePositions()
  return observe(domains: domains, counters: counters, policy: policy, poolTotals: poolTotals, now: now,
                 measurements: measurements, positions: &positions)
}

/// What `observe` keeps from one cycle to the next. Where each VM's device
/// sat in the last snapshot, by the VM's place in the inventory: a guess
/// checked by comparing one name, so it is never wrong, only sometimes
/// useless: the kernel lists links in the same order cycle after cycle, and
/// the name compare costs a tenth of hashing the name into the snapshot's
/// table (1,000 lookups per cycle, bench-agent).
///
/// And the last observation itself, with where each VM's reading comes from:
/// while the inventory's generation stands (the caller's word that the
/// domains are what they were: `Inventory` counts every change) under the
/// same policy, everything but the readings is what it was, and only the
/// readings are written, in place. Building the 1,000 observations anew each cycle (identities,
/// placements, NIC positions, class matching for pool holders) was most of
/// `observe`'s instructions (bench-agent under callgrind).
package struct DevicePositions: Sendable {
  var guesses: [Int] = []

  enum Source: Sendable {
    /// Nothing to read: the reading stays as it was built (`.stale`, `.unknown`).
    case fixed
    /// The host device to read, and the index of the domain it belongs to (for the guess).
    case device(String, HostDeviceKind, domain: Int)
    /// A VF, read as this cycle's `measurements` say; the domain's index.
    case measured(domain: Int)
  }
  /// The inventory generation the kept observation was built from.
  var generation: UInt64? = nil
  var policy: Policy? = nil
  var vms: [VMObservation] = []
  var sources: [Source] = []
  var heldByOthers: [Int] = []
  /// Whether the kept observation read VFs through `measurements`.
  var measuredVFs = false

  package init() {}

  mutating func position(of device: String, vm: Int, in names: InterfaceNames) -> Int? {
    if vm < guesses.count {
      let guess = guesses[vm]
      if guess >= 0, guess < names.count, names.names[guess] == device { return guess }
    } else {
      guesses.append(contentsOf: repeatElement(-1, count: vm + 1 - guesses.count))
    }
    let found = names.position(of: device)
    guesses[vm] = found ?? -1
    return found
  }

  /// A device's counters from the VM's side; stale when the device is missing
  /// from this snapshot (re-created between reads), never zero.
  mutating func reading(_ device: String, _ kind: HostDeviceKind, vm: Int, _ counters: CounterSnapshot,
                        now: Instant) -> CounterReading {
    position(of: device, vm: vm, in: counters.interfaces)
      .map { .known(source: device, counters: kind.vmCounters(counters.counters[$0]), at: now) } ?? .stale
  }

  /// A VF's reading as its counter source gave it this cycle.
  mutating func reading(_ measurement: VFMeasurement?, vm: Int, _ counters: CounterSnapshot, now: Instant) -> CounterReading {
    switch measurement {
    case .hostDevice(let device, let kind)?: reading(device, kind, vm: vm, counters, now: now)
    case .counters(let source, let c, let at)?: .known(source: source, counters: c, at: at)
    case .unknown?, nil: .unknown
    }
  }

  /// Whether the kept observation was built from this generation of the inventory.
  func sameInventory(_ generation: UInt64?, policy: Policy) -> Bool {
    guard let generation, generation == self.generation else { return false }
    return self.policy == policy
  }
}

/// `observe`, remembering where the devices were and what the inventory
/// gave for the next cycle.
///
/// `measurements` nil: a VF is read from its host netdev if it has one (the
/// stand-in pool), else unknown. Given (the agent): as its pool's
/// `counters` decided this cycle. `generation`: the inventory generation
/// `domains` were taken at; nil builds afresh every time.
package func observe(domains: [DomainInventory], counters: CounterSnapshot, policy: Policy,
                     poolTotals: [String: Int], now: Instant, vfSince: [String: Instant] = [:],
                     measurements: [String: VFMeasurement]? = nil, generation: UInt64? = nil,
                     positions: inout DevicePositions) -> Observation {
  // `vfSince` is given on an agent's first cycle only: build that one afresh.
  if vfSince.isEmpty, positions.measuredVFs == (measurements != nil), positions.sameInventory(generation, policy: policy) {
    var vms: [VMObservation] = []
    var sources: [DevicePositions.Source] = []
    // Out of the cache while written, so the writes are in place (unique storage).
    swap(&vms, &positions.vms)
    swap(&sources, &positions.sources)
    for k in vms.indices {
      switch sources[k] {
      case .device(let device, let kind, let d):
        vms[k].reading = positions.reading(device, kind, vm: d, counters, now: now)
      case .measured(let d):
        vms[k].reading = positions.reading(measurements?[vms[k].identity.uuid], vm: d, counters, now: now)
      case .fixed:
        continue
      }
    }
    swap(&vms, &positions.vms)
    swap(&sources, &positions.sources)
    return Observation(vms: positions.vms, pools: poolCapacities(policy, poolTotals, positions.heldByOthers))
  }
  var vms: [VMObservation] = []
  vms.reserveCapacity(domains.count)
  var sources: [DevicePositions.Source] = []
  sources.reserveCapacity(domains.count)
  var heldByOthers: [Int] = Array(repeating: 0, count: policy.pools.count)
  // Through a span, not `for domain in domains` nor `domains[d]`: binding
  // or passing an array's element copies it, a retain and release of every
  // string it holds.
  do {
    let domains = domains.span
    for d in domains.indices {
      let identity = VMIdentity(uuid: domains[d].uuid, name: domains[d].name, label: domains[d].qosLabel)
      let at = managedNICPositions(domains[d], policy: policy)
      // Class matching is the engine's (it caches it per VM); here it only
      // matters for a VM holding a pool VF, which counts against the cap when no
      // class manages it.
      if at.pool != nil, policy.resolveClass(of: identity).classIndex == nil {
        countPoolVFs(domains[d], policy: policy, except: nil, into: &heldByOthers)
        continue
      }
      // A VF of another pool (a second data NIC on it), or a second one of
      // this pool, is in use all the same: it counts against its pool's cap.
      if at.vf != nil { countPoolVFs(domains[d], policy: policy, except: at.vf, into: &heldByOthers) }
      let inSwap = domains[d].journal != nil
      let placement: Placement
      switch (at.virtio, at.vf) {
      case (.some, .some) where !inSwap && isFailoverPair(domains[d], at): placement = .vf(pool: policy.pools[at.pool!].name)
      case (_, .some) where inSwap, (.some, .some): placement = .transitioning(pool: policy.pools[at.pool!].name)
      case (nil, .some): placement = .vf(pool: policy.pools[at.pool!].name)
      case (.some, nil): placement = inSwap ? .transitioning(pool: "") : .virtio
      case (nil, nil): placement = .none
      }
      let active: Int? = if case .vf = placement { at.vf } else if case .virtio = placement { at.virtio } else { nil }
      // The NIC's counters from the VM's side. A NIC the host cannot see (a VF
      // without per-VF statistics) is unknown; one whose device is missing from
      // this snapshot (re-created between reads) is stale, never zero.
      let reading: CounterReading
      let source: DevicePositions.Source
      if let active, active == at.vf, let measurements {
        source = .measured(domain: d)
        reading = positions.reading(measurements[domains[d].uuid], vm: d, counters, now: now)
      } else if let active {
        if let device = domains[d].nics[active].hostDevice, let kind = domains[d].nics[active].hostDeviceKind,
           kind != .virtualFunction {
          source = .device(device, kind, domain: d)
          reading = positions.reading(device, kind, vm: d, counters, now: now)
        } else {
          source = .fixed
          reading = .unknown
        }
      } else {
        source = .fixed
        reading = .stale
      }
      vms.append(VMObservation(identity: identity, placement: placement, reading: reading,
                               vfSince: vfSince.isEmpty ? nil : vfSince[domains[d].uuid]))
      sources.append(source)
    }
  }
  if vfSince.isEmpty, let generation {
    positions.generation = generation
    positions.policy = policy
    positions.vms = vms
    positions.sources = sources
    positions.heldByOthers = heldByOthers
    positions.measuredVFs = measurements != nil
  } else {
    positions.generation = nil
    positions.policy = nil
    positions.vms = []
    positions.sources = []
  }
  return Observation(vms: vms, pools: poolCapacities(policy, poolTotals, heldByOthers))
}

private func poolCapacities(_ policy: Policy, _ poolTotals: [String: Int], _ heldByOthers: [Int]) -> [String: PoolCapacity] {
  var pools: [String: PoolCapacity] = [:]
  for (i, pool) in policy.pools.enumerated() {
    pools[pool.name] = PoolCapacity(total: poolTotals[pool.name] ?? 0, heldByOthers: heldByOthers[i])
  }
  return pools
}
