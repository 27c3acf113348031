import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

// Level-triggered repair: a managed VM found with its VF and its data virtio
// NIC and no journal is settled the way the engine would have it now, through
// the same journalled last step a swap takes, so a kill during the repair is
// finished by the next start like any swap.
extension Swapper {
  public func repairBothNICs(_ domain: DomainInventory, pool: VFPool, nics: ManagedNICs,
                             keep: BothNICsRepair) async -> SwapOutcome {
    guard domain.journal == nil, let virtio = nics.virtio, let vf = nics.vf,
          let virtioAlias = virtio.alias, let vfAlias = vf.alias else {
      step(domain, keep == .keepVF ? .promote : .demote, .refused,
           ["reason": "repair needs both NICs with aliases and no journal"])
      return .refused
    }
    switch keep {
    case .keepVF:
      let saved: String
      do { saved = try InterfaceXML.restorable(virtio.xml) } catch {
        step(domain, .promote, .refused, ["reason": .string("cannot save the virtio NIC: \(error)")])
        return .refused
      }
      var journal = SwapJournal(operation: .promote, pool: pool.network, oldAlias: virtioAlias, newAlias: vfAlias,
                                step: .detaching, startedAtUnixMilliseconds: Swapper.nowMilliseconds(),
                                savedInterfaceXML: saved)
      step(domain, .promote, .reconcile, ["repair": .string(keep.rawValue)])
      return await finishPromotion(domain, journal: &journal)
    case .keepVirtio:
      var journal = SwapJournal(operation: .demote, pool: pool.network, oldAlias: vfAlias, newAlias: virtioAlias,
                                step: .detaching, startedAtUnixMilliseconds: Swapper.nowMilliseconds(),
                                savedInterfaceXML: nil)
      step(domain, .demote, .reconcile, ["repair": .string(keep.rawValue)])
      return await finishDemotion(domain, journal: &journal)
    }
  }
}

/// A VM found with both NICs and no journal, and what the engine keeps.
struct RepairDue {
  let domain: DomainInventory
  let pool: VFPool
  let nics: ManagedNICs
  let keep: BothNICsRepair
}

/// The managed VMs `reconcileAll` repairs: both NICs, no journal, not a
/// settled failover pair, and a class that manages the VM. Pure. It runs
/// before every cycle: a VM without a NIC of a pool (nearly all of them
/// on a host with few VFs) is passed over on a glance at its NICs' kinds.
func vmsWithBothNICs(_ domains: [DomainInventory], policy: Policy) -> [(domain: DomainInventory, pool: VFPool, nics: ManagedNICs)] {
  var out: [(DomainInventory, VFPool, ManagedNICs)] = []
  for d in domains where d.journal == nil && d.nics.contains(where: { $0.kind.isPoolNIC }) {
    let at = managedNICPositions(d, policy: policy)
    guard let p = at.pool, at.virtio != nil, at.vf != nil, !isFailoverPair(d, at) else { continue }
    guard case .managed = policy.resolveClass(of: VMIdentity(uuid: d.uuid, name: d.name, label: d.qosLabel)) else { continue }
    out.append((d, policy.pools[p], managedNICs(d, at: at, policy: policy)))
  }
  return out
}

extension NICKind {
  /// A NIC from a pool network: a pool member or a VF of a hostdev network.
  var isPoolNIC: Bool {
    switch self {
    case .poolMember, .hostdevVF(_, _?): true
    default: false
    }
  }
}
