import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

// What a swap left behind between cycles: journals to finish, detaches a
// guest has not completed yet.
extension Agent {
  /// Journals at detach-pending, for the metric an alert watches: a guest
  /// holding on to its old NIC leaves the VM with two.
  func observeDetachPending(_ domains: [DomainInventory]) {
    let now = Swapper.nowMilliseconds()
    var pending: [String: Double] = [:]
    for d in domains {
      if let j = d.journal, j.step == .detachPending { pending[d.name] = Double(max(0, now - j.startedAtUnixMilliseconds)) / 1000 }
    }
    metrics.observeDetachPending(pending)
  }
}

/// Swaps run one at a time inside the loop, so a journal seen between
/// cycles is one a failed or pending swap left. On start and reconnect
/// every journal is reconciled; between cycles (`waitingOnGuests: false`)
/// a detach still pending in a guest that holds on to its old NIC (paused,
/// hung) is left to libvirt — asking again would block the loop for the
/// detach deadline each cycle — and is finished once the NIC is gone.
/// True when it reconciled anything.
@discardableResult
func reconcileAll(_ domains: [DomainInventory], _ inventory: Inventory, _ swapper: Swapper, log: EventLog,
                  waitingOnGuests: Bool = true,
                  repairs: [RepairDue] = []) async -> Bool {
  var acted = false
  for domain in domains where domain.journal != nil {
    if !waitingOnGuests, let j = domain.journal, j.step == .detachPending, domain.nic(alias: j.oldAlias) != nil { continue }
    let identity = VMIdentity(uuid: domain.uuid, name: domain.name, label: domain.qosLabel)
    // A journal is vfshift's own: finishing it is never touching an
    // unmanaged VM, even if the policy no longer matches the VM.
    let outcome = await swapper.reconcile(domain)
    log.emit("reconcile", ["vm": .string(identity.name), "outcome": .string(outcome?.rawValue ?? "none")])
    try? inventory.refresh(uuid: domain.uuid)
    acted = true
  }
  for r in repairs {
    let outcome = await swapper.repairBothNICs(r.domain, pool: r.pool, nics: r.nics, keep: r.keep)
    log.emit("reconcile", ["vm": .string(r.domain.name), "repair": .string(r.keep.rawValue), "outcome": .string(outcome.rawValue)])
    try? inventory.refresh(uuid: r.domain.uuid)
    acted = true
  }
  return acted
}

extension Agent {
  /// The VMs found with both their VF and their data virtio NIC and no
  /// journal, each with what the engine would keep now (`repairOfBothNICs`).
  func bothNICRepairs(_ domains: [DomainInventory]) -> [RepairDue] {
    let policy = self.policy
    let found = vmsWithBothNICs(domains, policy: policy)
    guard !found.isEmpty else { return [] }
    return engine.read { state in
      found.compactMap { f in
        let vm = VMIdentity(uuid: f.domain.uuid, name: f.domain.name, label: f.domain.qosLabel)
        return state.repairOfBothNICs(vm: vm, pool: f.pool.name, policy: policy)
          .map { RepairDue(domain: f.domain, pool: f.pool, nics: f.nics, keep: $0) }
      }
    }
  }
}
