import Foundation
import VFShiftCore
import VFShiftLibvirt

/// One action of a plan with what carrying it out needs, found once from the
/// cycle's inventory: the domain as observed, its pool, its managed NICs.
struct Step: Sendable {
  var action: Action
  var domain: DomainInventory
  var pool: VFPool
  var nics: ManagedNICs
}

/// What the agent does with a plan: the loop observes and decides the same
/// way whichever actuator it has; only this says whether anything changes.
protocol Actuator: AnyObject {
  /// Finishes what earlier swaps left (journals); true when it changed
  /// anything, so the cycle takes the inventory again. `waitingOnGuests`:
  /// see `Agent.reconcileAll`.
  func reconcile(_ domains: [DomainInventory], waitingOnGuests: Bool) async -> Bool
  /// Carries out one step; nil when nothing was tried (a dry run).
  func apply(_ step: Step, now: Instant) async -> SwapOutcome?
  /// Keeps the guest's refusals in the domain (nil: clears them), so a
  /// restarted agent holds the VM as this one does.
  func keepRefusal(_ domain: DomainInventory, _ record: RefusalRecord?)
}

extension Agent {
  /// The plan's actions as steps: the few domains acted on are looked up in
  /// the cycle's own snapshot (no table of every VM), a step whose VM or
  /// pool is gone is dropped.
  func steps(_ plan: Plan, domains: [DomainInventory]) -> [Step] {
    plan.actions.compactMap { action in
      guard let domain = domains.first(where: { $0.uuid == action.vm.uuid }),
            let pool = policy.pools.first(where: { $0.name == action.pool }) else { return nil }
      return Step(action: action, domain: domain, pool: pool, nics: managedNICs(domain, policy: policy))
    }
  }
}

/// `vfshift run --dry-run`: every decision logged as it would be carried
/// out, nothing touched, no journal finished.
final class DryRunActuator: Actuator {
  let log: EventLog
  init(log: EventLog) { self.log = log }

  func reconcile(_ domains: [DomainInventory], waitingOnGuests: Bool) async -> Bool { false }

  func apply(_ step: Step, now: Instant) async -> SwapOutcome? {
    log.emit("would-swap", ["vm": .string(step.action.vm.name), "direction": .string(step.action.verb.rawValue),
                            "pool": .string(step.pool.name), "t": .number(now.seconds)])
    return nil
  }

  func keepRefusal(_ domain: DomainInventory, _ record: RefusalRecord?) {}
}

/// The swap protocol on libvirt (`Swapper`). A guest that did not take the
/// NIC it was given is held off by the engine (`EngineState.guestRefused`).
final class LibvirtActuator: Actuator {
  let swapper: Swapper
  let inventory: Inventory
  let log: EventLog
  /// The level-triggered repairs due in these domains (`Agent.bothNICRepairs`).
  let repairs: ([DomainInventory]) -> [RepairDue]

  init(swapper: Swapper, inventory: Inventory, log: EventLog,
       repairs: @escaping ([DomainInventory]) -> [RepairDue] = { _ in [] }) {
    self.swapper = swapper; self.inventory = inventory; self.log = log; self.repairs = repairs
  }

  /// VMs seen with both NICs and no journal by the last reconcile.
  var bothNICsSeen: Set<String> = []

  func reconcile(_ domains: [DomainInventory], waitingOnGuests: Bool) async -> Bool {
    // Repaired only when seen so on two reconciles in a row: a human who
    // plugs a virtio NIC and then unplugs the VF passes through the same
    // state for a moment, and must not have the new NIC taken away under them.
    let due = repairs(domains)
    let ready = due.filter { bothNICsSeen.contains($0.domain.uuid) }
    bothNICsSeen = Set(due.map(\.domain.uuid))
    return await reconcileAll(domains, inventory, swapper, log: log, waitingOnGuests: waitingOnGuests, repairs: ready)
  }

  func apply(_ step: Step, now: Instant) async -> SwapOutcome? {
    let action = step.action, domain = step.domain
    let outcome = switch action {
    case .promote: await swapper.promote(domain, to: step.pool, nics: step.nics)
    case .demote: await swapper.demote(domain, from: step.pool, nics: step.nics)
    }
    try? inventory.refresh(uuid: domain.uuid)
    return outcome
  }

  func keepRefusal(_ domain: DomainInventory, _ record: RefusalRecord?) {
    do {
      try swapper.connection.setMetadata(uuid: domain.uuid, namespaceURI: VFShiftNamespace.refusal,
                                         prefix: VFShiftNamespace.refusalPrefix, xml: record?.xmlElement())
    } catch {
      // The engine holds the VM all the same; only a restart would forget it.
      log.emit("error", ["kind": "refusal-record", "vm": .string(domain.name), "error": .string("\(error)")])
    }
    try? inventory.refresh(uuid: domain.uuid)
  }
}
