/// What reconcile does with a managed VM found holding both its VF and its
/// data virtio NIC with no journal to say how it got there (a crash between
/// steps, a human, an attach that completed after its wait gave up): it
/// keeps the one the engine would have it on now, and the VM ends with one.
public enum BothNICsRepair: String, Sendable, Equatable {
  /// Park the virtio NIC's XML, then detach the virtio NIC.
  case keepVF = "keep-vf"
  /// Detach the VF and bring its pool member up again.
  case keepVirtio = "keep-virtio"
}

extension EngineState {
  /// The engine's current decision for `vm` holding a VF of `pool` beside its
  /// virtio NIC; nil for a VM no class manages (never touched). The rules are
  /// the allocator's for a VM on a VF: a class that bars VFs or uses another
  /// pool lets it go; a pinned class keeps it; an eligible one keeps it while
  /// its track says intensive, and a VM the engine has no track for yet keeps
  /// it (as a VM found on a VF does: it got there on evidence this process
  /// lacks, until measured traffic says otherwise). Caps are the next cycle's
  /// business: over the cap, the allocator sheds as for any VM on a VF.
  public func repairOfBothNICs(vm: VMIdentity, pool: String, policy: Policy) -> BothNICsRepair? {
    guard case .managed(let c) = policy.resolveClass(of: vm) else { return nil }
    let cls = policy.classes[c]
    let classPool = cls.pool.flatMap(policy.poolIndex(named:)) ?? -1
    if cls.vf == .never || classPool < 0 || policy.pools[classPool].name != pool { return .keepVirtio }
    if cls.vf == .always { return .keepVF }
    guard let slot = index[vm.uuid], slot < tracks.count, tracks[slot].identity.uuid == vm.uuid, !tracks[slot].fresh
    else { return .keepVF }
    return tracks[slot].intensive ? .keepVF : .keepVirtio
  }
}
