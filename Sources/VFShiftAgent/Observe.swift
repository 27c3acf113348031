import VFShiftCore
import VFShiftLibvirt

/// The NICs of one domain that vfshift cares about under a policy.
public struct ManagedNICs: Sendable, Equatable {
  public var virtio: NIC?
  public var vf: NIC?
  /// The policy pool the VF belongs to.
  public var pool: String?
}

/// Sorts a domain's NICs into its virtio NIC and its VF (a NIC from one of
/// the policy's pool networks). Other NICs (user, a second bridge) are seen
/// and left alone.
public func managedNICs(_ domain: DomainInventory, policy: Policy) -> ManagedNICs {
  var out = ManagedNICs()
  for nic in domain.nics {
    if let network = nic.poolNetwork, let pool = policy.pools.first(where: { $0.network == network }) {
      if out.vf == nil { out.vf = nic; out.pool = pool.name }
      continue
    }
    switch nic.kind {
    case .virtioBridge, .virtioNetwork:
      if out.virtio == nil, nic.teaming == nil || nic.teaming == .persistent { out.virtio = nic }
    default:
      continue
    }
  }
  return out
}

/// Builds the engine's view of the world from libvirt's inventory and one
/// counter snapshot. Pure: the agent, its tests and `record` share it.
public func observe(domains: [DomainInventory], counters: CounterSnapshot, policy: Policy,
                    poolTotals: [String: Int], now: Instant, vfSince: [String: Instant] = [:]) -> Observation {
  var vms: [VMObservation] = []
  vms.reserveCapacity(domains.count)
  var heldByOthers: [String: Int] = [:]
  for domain in domains {
    let identity = VMIdentity(uuid: domain.uuid, name: domain.name, label: domain.qosLabel)
    let nics = managedNICs(domain, policy: policy)
    // Class matching is the engine's (it caches it per VM); here it only
    // matters for a VM holding a pool VF, which counts against the cap when no
    // class manages it.
    if let pool = nics.pool, policy.resolveClass(of: identity).classIndex == nil {
      heldByOthers[pool, default: 0] += 1
      continue
    }
    let placement: Placement
    switch (nics.virtio, nics.vf) {
    case (_, .some) where domain.journal != nil, (.some, .some): placement = .transitioning(pool: nics.pool!)
    case (nil, .some): placement = .vf(pool: nics.pool!)
    case (.some, nil): placement = domain.journal == nil ? .virtio : .transitioning(pool: "")
    case (nil, nil): placement = .none
    }
    let active: NIC? = if case .vf = placement { nics.vf } else if case .virtio = placement { nics.virtio } else { nil }
    vms.append(VMObservation(identity: identity, placement: placement,
                             reading: reading(of: active, counters: counters, now: now),
                             vfSince: vfSince[domain.uuid]))
  }
  var pools: [String: PoolCapacity] = [:]
  for pool in policy.pools {
    pools[pool.name] = PoolCapacity(total: poolTotals[pool.name] ?? 0, heldByOthers: heldByOthers[pool.name] ?? 0)
  }
  return Observation(vms: vms, pools: pools)
}

/// A NIC's counters from the VM's side. A NIC the host cannot see (a VF
/// without per-VF statistics) is unknown; one whose device is missing from
/// this snapshot (re-created between reads) is stale, never zero.
func reading(of nic: NIC?, counters: CounterSnapshot, now: Instant) -> CounterReading {
  guard let nic else { return .stale }
  guard let device = nic.hostDevice, let kind = nic.hostDeviceKind, kind != .virtualFunction else { return .unknown }
  guard let host = counters[device] else { return .stale }
  return .known(source: device, counters: kind.vmCounters(host), at: now)
}
