import VFShiftCore
import VFShiftLibvirt

extension DataNICSelector {
  /// Whether `nic` is the NIC this selector names (any kind: the caller
  /// keeps to virtio NICs).
  func matches(_ nic: NIC) -> Bool {
    switch (self, nic.kind) {
    case (.bridge(let b), .virtioBridge(let bridge)): b == bridge
    case (.bridge(let b), .virtioNetwork(_, let bridge?)): b == bridge
    case (.network(let n), .virtioNetwork(let network, _)): n == network
    case (.alias(let a), _): nic.alias == a
    default: false
    }
  }
}

/// Where a domain's data NIC and its VF sit. The VF is the first NIC from
/// one of the policy's pools. The data virtio NIC is the first virtio NIC
/// (failover's persistent half or no teaming) that the pool's `dataNIC`
/// names (with no `dataNIC`, the first virtio NIC); beside a VF of a
/// `mac: same` pool only one with the VF's MAC: a VM on a VF keeps its other
/// NICs, and they must not read as a swap half done. Of several such NICs
/// the one the last swap recorded as the data NIC (its alias) wins over the
/// order. On virtio, with several pools, the pool of the VM's class names
/// it: a VM with NICs on two pools' bridges is promoted in place of the NIC
/// its class's pool replaces, not the first some pool would. Every other NIC
/// is never touched, counted or parked.
func managedNICPositions(_ domain: DomainInventory, policy: Policy) -> ManagedNICPositions {
  var out = ManagedNICPositions()
  let nics = domain.nics
  for i in nics.indices {
    let network: String
    switch nics[i].kind {
    case .poolMember(let n, _), .hostdevVF(_, let n?): network = n
    default: continue
    }
    if let p = policy.pools.firstIndex(where: { $0.network == network }) {
      out.vf = i; out.pool = p
      break
    }
  }
  // Class matching only where it can change the answer (it is per VM, per cycle).
  let classPool: VFPool? = if out.pool == nil, policy.pools.count > 1, nics.count > 1,
    let c = policy.resolveClass(of: VMIdentity(uuid: domain.uuid, name: domain.name, label: domain.qosLabel)).classIndex,
    let p = policy.classes[c].pool.flatMap(policy.poolIndex(named:)) { policy.pools[p] } else { nil }
  var first: Int?
  for i in nics.indices {
    switch nics[i].kind {
    case .virtioBridge, .virtioNetwork: break
    default: continue
    }
    guard nics[i].teaming == nil || nics[i].teaming == .persistent else { continue }
    let isData: Bool
    if let p = out.pool, let vf = out.vf {
      let pool = policy.pools[p]
      // Beside a VF of a `mac: same` pool the data NIC also has the VF's
      // MAC: another virtio NIC on the same bridge (one a human added) is
      // not the swap's other half, and is never parked or removed.
      isData = (pool.dataNIC.map { $0.matches(nics[i]) } ?? true) && (pool.mac == .new || nics[i].mac == nics[vf].mac)
    } else if let classPool {
      isData = classPool.dataNIC.map { $0.matches(nics[i]) } ?? true
    } else {
      isData = policy.pools.isEmpty || policy.pools.contains { $0.dataNIC.map { s in s.matches(nics[i]) } ?? true }
    }
    guard isData else { continue }
    first = first ?? i
    // Without a record the first is the data NIC; with one, the recorded wins.
    guard let recorded = domain.dataNICAlias else { break }
    if nics[i].alias == recorded { out.virtio = i; return out }
  }
  out.virtio = first
  return out
}

/// Adds each NIC of `domain` from one of the policy's pools, but the one at
/// `except`, to its pool's count.
func countPoolVFs(_ domain: DomainInventory, policy: Policy, except: Int?, into held: inout [Int]) {
  for i in domain.nics.indices where i != except {
    switch domain.nics[i].kind {
    case .poolMember(let n, _), .hostdevVF(_, let n?):
      if let p = policy.pools.firstIndex(where: { $0.network == n }) { held[p] += 1 }
    default: continue
    }
  }
}
