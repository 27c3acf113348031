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

func managedNICPositions(_ domain: DomainInventory, policy: Policy) -> ManagedNICPositions {
  var out = ManagedNICPositions()
  for i in domain.nics.indices {
    let managed: Bool
    switch domain.nics[i].kind {
    case .poolMember(let network, _), .hostdevVF(_, let network?):
      if let p = policy.pools.firstIndex(where: { $0.network == network }) {
        if out.vf == nil { out.vf = i; out.pool = p }
        continue
      }
      managed = false
    case .virtioBridge, .virtioNetwork:
      managed = true
    default:
      managed = false
    }
    guard managed, out.virtio == nil else { continue }
    let teaming = domain.nics[i].teaming
    if teaming == nil || teaming == .persistent { out.virtio = i }
  }
  return out
}

/// Sorts a domain's NICs into its virtio NIC and its VF (a NIC from one of
/// the policy's pool networks). Other NICs (user, a second bridge) are seen
/// and left alone.
public func managedNICs(_ domain: DomainInventory, policy: Policy) -> ManagedNICs {
  let at = managedNICPositions(domain, policy: policy)
  return ManagedNICs(virtio: at.virtio.map { domain.nics[$0] }, vf: at.vf.map { domain.nics[$0] },
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

/// Where each VM's device sat in the last snapshot, by the VM's place in the
/// inventory. A guess checked by comparing one name, so it is never wrong,
/// only sometimes useless: the kernel lists links in the same order cycle
/// after cycle, and the name compare costs a tenth of hashing the name into
/// the snapshot's table (1,000 lookups per cycle, bench-agent).
package struct DevicePositions: Sendable {
  var guesses: [Int] = []
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
}

/// `observe`, remembering where the devices were for the next cycle.
package func observe(domains: [DomainInventory], counters: CounterSnapshot, policy: Policy,
                     poolTotals: [String: Int], now: Instant, vfSince: [String: Instant] = [:],
                     positions: inout DevicePositions) -> Observation {
  var vms: [VMObservation] = []
  vms.reserveCapacity(domains.count)
  var heldByOthers: [Int] = Array(repeating: 0, count: policy.pools.count)
  // By index, not `for domain in domains`: binding each element copies it,
  // a retain and release of every string it holds.
  for d in domains.indices {
    let identity = VMIdentity(uuid: domains[d].uuid, name: domains[d].name, label: domains[d].qosLabel)
    let at = managedNICPositions(domains[d], policy: policy)
    // Class matching is the engine's (it caches it per VM); here it only
    // matters for a VM holding a pool VF, which counts against the cap when no
    // class manages it.
    if let pool = at.pool, policy.resolveClass(of: identity).classIndex == nil {
      heldByOthers[pool] += 1
      continue
    }
    let inSwap = domains[d].journal != nil
    let placement: Placement
    switch (at.virtio, at.vf) {
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
    if let active {
      if let device = domains[d].nics[active].hostDevice, let kind = domains[d].nics[active].hostDeviceKind,
         kind != .virtualFunction {
        reading = positions.position(of: device, vm: d, in: counters.interfaces)
          .map { .known(source: device, counters: kind.vmCounters(counters.counters[$0]), at: now) } ?? .stale
      } else {
        reading = .unknown
      }
    } else {
      reading = .stale
    }
    vms.append(VMObservation(identity: identity, placement: placement, reading: reading,
                             vfSince: vfSince.isEmpty ? nil : vfSince[domains[d].uuid]))
  }
  var pools: [String: PoolCapacity] = [:]
  for (i, pool) in policy.pools.enumerated() {
    pools[pool.name] = PoolCapacity(total: poolTotals[pool.name] ?? 0, heldByOthers: heldByOthers[i])
  }
  return Observation(vms: vms, pools: pools)
}
