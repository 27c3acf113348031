import Foundation
import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

/// How a swap ended, for the log, the metrics and the tests.
public enum SwapOutcome: String, Sendable, Equatable {
  case done
  /// The new NIC could not be attached; the VM keeps its old one.
  case attachFailed = "attach-failed"
  /// The new NIC is in, but the guest has not let go of the old one: the VM
  /// has two NICs until it does. Retried by reconcile, never answered with a third.
  case detachPending = "detach-pending"
  /// Nothing to do, or nothing safe to do (no saved virtio NIC, no alias).
  case refused
  case journalFailed = "journal-failed"
  /// The new NIC went in but the guest did not use it within the pool's
  /// confirmSeconds: it was taken out again, the VM keeps its old NIC.
  case notTaken = "not-taken"
}

/// Carries out promotions and demotions make-before-break, journalling each
/// step in the domain's metadata before taking it, and finishes or rolls back
/// whatever an earlier process left half done.
public struct Swapper: Sendable {
  public static let vfAlias = "ua-vfshift-vf"
  /// The alias a demotion gives a restored virtio NIC whose saved XML has no
  /// user alias of its own, journalled before the attach.
  public static let restoredAlias = "ua-vfshift-virtio"
  public let connection: LibvirtConnection
  public let log: EventLog
  public let detachDeadline: Duration
  public let attachDeadline: Duration
  /// Test hook: called after each step, so a test can kill or stop the
  /// process exactly there.
  public let stepHook: @Sendable (SwapStep) -> Void
  /// How the switch-over works the bridge (SwitchOver.swift).
  public var switchOver = SwitchOverMode.redirect

  public init(connection: LibvirtConnection, log: EventLog, attachDeadline: Duration = .seconds(15),
              detachDeadline: Duration = .seconds(10), stepHook: @escaping @Sendable (SwapStep) -> Void = { _ in }) {
    self.connection = connection; self.log = log
    self.attachDeadline = attachDeadline; self.detachDeadline = detachDeadline; self.stepHook = stepHook
  }

  func step(_ domain: DomainInventory, _ verb: Verb, _ name: SwapStep, _ fields: [String: LogValue] = [:]) {
    var f = fields
    f["vm"] = .string(domain.name); f["uuid"] = .string(domain.uuid); f["swap"] = .string(verb.rawValue); f["step"] = .string(name.rawValue)
    log.emit("swap-step", f)
    stepHook(name)
  }

  static func nowMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

  public func promote(_ domain: DomainInventory, to pool: VFPool, nics: ManagedNICs) async -> SwapOutcome {
    if pool.mode == .failover { return await promoteFailover(domain, to: pool, nics: nics) }
    guard let virtio = nics.virtio, let oldAlias = virtio.alias else {
      step(domain, .promote, .refused, ["reason": "no virtio NIC with an alias to swap out"])
      return .refused
    }
    let saved: String
    do { saved = try InterfaceXML.restorable(virtio.xml) } catch {
      step(domain, .promote, .refused, ["reason": .string("cannot save the virtio NIC: \(error)")])
      return .refused
    }
    var journal = SwapJournal(operation: .promote, pool: pool.network, oldAlias: oldAlias, newAlias: Swapper.vfAlias,
                              step: .attaching, startedAtUnixMilliseconds: Swapper.nowMilliseconds(),
                              savedInterfaceXML: saved)
    do {
      // The record first: written alone it only names the data NIC there is.
      try connection.recordDataNIC(uuid: domain.uuid, alias: oldAlias)
      try connection.writeJournal(uuid: domain.uuid, journal)
    } catch {
      step(domain, .promote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    step(domain, .promote, .journal)
    let guestBefore = await guestNICs(domain.uuid)
    let nic: NIC
    do {
      // The virtio NIC's MAC by default: the guest's lease and its MAC-matched
      // configuration carry over (libvirt accepts the duplicate while both exist).
      nic = try await connection.attachPoolInterface(uuid: domain.uuid, network: pool.network,
                                                     mac: pool.mac == .same ? virtio.mac : nil,
                                                     alias: Swapper.vfAlias, deadline: .now + attachDeadline)
      step(domain, .promote, .attached, ["device": .string(nic.hostDevice ?? "-"), "mac": .string(nic.mac)])
    } catch {
      step(domain, .promote, .attachFailed, ["error": .string("\(error)")])
      try? connection.clearJournal(uuid: domain.uuid)
      return .attachFailed
    }
    let held = holdOldPort(domain, .promote, old: virtio, new: nic)
    guard await guestTakes(domain, .promote, nic: nic, before: guestBefore, pool: pool) else {
      return await rollBack(domain, .promote, newAlias: Swapper.vfAlias, held: held)
    }
    return await finishPromotion(domain, journal: &journal)
  }

  /// From "the VF is in" to "the virtio NIC is out and parked".
  func finishPromotion(_ domain: DomainInventory, journal: inout SwapJournal) async -> SwapOutcome {
    journal.step = .detaching
    do {
      try connection.writeJournal(uuid: domain.uuid, journal)
      let parked = ParkedNIC(pool: journal.pool, sinceUnixMilliseconds: Swapper.nowMilliseconds(),
                             savedInterfaceXML: journal.savedInterfaceXML ?? "")
      try connection.setMetadata(uuid: domain.uuid, namespaceURI: ParkedNIC.namespace, prefix: ParkedNIC.prefix,
                                 xml: parked.xmlElement())
    } catch {
      step(domain, .promote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    let current = currentInventory(domain)
    let oldPort = steerBeforeDetach(current, .promote, oldAlias: journal.oldAlias, newAlias: journal.newAlias)
      ?? current.nic(alias: journal.oldAlias).flatMap(Swapper.bridgeSide)
    step(domain, .promote, .detachRequested, ["alias": .string(journal.oldAlias)])
    let report = await connection.detachInterface(uuid: domain.uuid, alias: journal.oldAlias, deadline: .now + detachDeadline)
    if let oldPort { restoreOldPort(domain, .promote, port: oldPort) }
    return settle(domain, .promote, report.outcome, journal: &journal, releasedMember: nil)
  }

  public func demote(_ domain: DomainInventory, from pool: VFPool, nics: ManagedNICs) async -> SwapOutcome {
    if pool.mode == .failover { return await demoteFailover(domain, from: pool, nics: nics) }
    guard let vf = nics.vf, let vfAlias = vf.alias else {
      step(domain, .demote, .refused, ["reason": "no VF NIC with an alias"])
      return .refused
    }
    guard let parked = readParked(domain.uuid) else {
      // Without the saved virtio NIC there is nothing exact to go back to:
      // better a VM on a VF than a VM without a network.
      step(domain, .demote, .refused, ["reason": "no saved virtio NIC in the domain's metadata"])
      return .refused
    }
    let restore: (xml: String, alias: String)
    do { restore = try InterfaceXML.withUserAlias(parked.savedInterfaceXML, fallback: Swapper.restoredAlias) } catch {
      step(domain, .demote, .refused, ["reason": .string("cannot restore the saved virtio NIC: \(error)")])
      return .refused
    }
    var journal = SwapJournal(operation: .demote, pool: pool.network, oldAlias: vfAlias,
                              newAlias: restore.alias, step: .attaching,
                              startedAtUnixMilliseconds: Swapper.nowMilliseconds(), savedInterfaceXML: restore.xml)
    do {
      // The restored NIC comes back last in libvirt's list: its alias, not
      // its place, says it is the data NIC from now on (a record of a NIC not
      // yet there, should the journal fail, falls back to the first).
      try connection.recordDataNIC(uuid: domain.uuid, alias: restore.alias)
      try connection.writeJournal(uuid: domain.uuid, journal)
    } catch {
      step(domain, .demote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    step(domain, .demote, .journal)
    let guestBefore = await guestNICs(domain.uuid)
    let nic: NIC
    do {
      nic = try await connection.restoreInterface(uuid: domain.uuid, savedXML: restore.xml,
                                                  deadline: .now + attachDeadline)
      step(domain, .demote, .attached, ["device": .string(nic.hostDevice ?? "-"), "mac": .string(nic.mac)])
    } catch {
      step(domain, .demote, .attachFailed, ["error": .string("\(error)")])
      try? connection.clearJournal(uuid: domain.uuid)
      return .attachFailed
    }
    let held = holdOldPort(domain, .demote, old: vf, new: nic)
    guard await guestTakes(domain, .demote, nic: nic, before: guestBefore, pool: pool) else {
      return await rollBack(domain, .demote, newAlias: journal.newAlias, held: held)
    }
    return await finishDemotion(domain, journal: &journal)
  }

  func finishDemotion(_ domain: DomainInventory, journal: inout SwapJournal) async -> SwapOutcome {
    journal.step = .detaching
    do { try connection.writeJournal(uuid: domain.uuid, journal) } catch {
      step(domain, .demote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    let current = currentInventory(domain)
    // Found again after the detach whether or not it was steered: a killed
    // process may have left it redirecting (holdOldPort).
    let oldPort = steerBeforeDetach(current, .demote, oldAlias: journal.oldAlias, newAlias: journal.newAlias)
      ?? current.nic(alias: journal.oldAlias).flatMap(Swapper.bridgeSide)
    step(domain, .demote, .detachRequested, ["alias": .string(journal.oldAlias)])
    let report = await connection.detachInterface(uuid: domain.uuid, alias: journal.oldAlias, deadline: .now + detachDeadline)
    if let oldPort { restoreOldPort(domain, .demote, port: oldPort) }
    let outcome = settle(domain, .demote, report.outcome, journal: &journal, releasedMember: report.releasedPoolMember)
    if outcome == .done { clearVFMACOnPF(domain, vf: current.nic(alias: journal.oldAlias), pool: journal.pool) }
    return outcome
  }

  func guestTakes(_ domain: DomainInventory, _ verb: Verb, nic: NIC, before: [GuestInterface]?, pool: VFPool) async -> Bool {
    switch await confirmGuestUses(domain, nic: nic, before: before, within: .milliseconds(Int64(pool.confirmSeconds * 1000))) {
    case .confirmed(let how):
      step(domain, verb, .guestUsesNew, ["by": .string(how)])
      return true
    case .notConfirmed(let why):
      step(domain, verb, .guestNotUsingNew, ["reason": .string(why)])
      return false
    }
  }

  /// Make before break, undone: the new NIC out again, the old one never
  /// touched, the journal cleared once the new one is gone (until then a
  /// restarted agent finds it and finishes forward, which is safe: both NICs work).
  func rollBack(_ domain: DomainInventory, _ verb: Verb, newAlias: String, held: String?) async -> SwapOutcome {
    let report = await connection.detachInterface(uuid: domain.uuid, alias: newAlias, deadline: .now + detachDeadline)
    switch report.outcome {
    case .removed, .alreadyAbsent:
      if let held { restoreOldPort(domain, verb, port: held) }
      if let member = report.releasedPoolMember {
        do { try setLinkUp(member) } catch { step(domain, verb, .memberUpFailed, ["error": .string("\(error)")]) }
      }
      try? connection.clearJournal(uuid: domain.uuid)
      step(domain, verb, .rolledBack, ["reason": "the guest did not use the new NIC"])
      return .notTaken
    case .stillPresentAfterDeadline, .removalFailed, .rejected:
      step(domain, verb, .rollbackPending, ["detail": .string("\(report.outcome)")])
      return .detachPending
    }
  }

  /// The last step of either direction: done when the old NIC is gone,
  /// pending (and journalled as such) when the guest still holds it.
  func settle(_ domain: DomainInventory, _ verb: Verb, _ outcome: DetachOutcome, journal: inout SwapJournal,
              releasedMember: String?) -> SwapOutcome {
    switch outcome {
    case .removed, .alreadyAbsent:
      if let member = releasedMember {
        do { try setLinkUp(member) } catch { step(domain, verb, .memberUpFailed, ["error": .string("\(error)")]) }
      }
      if verb == .demote {
        try? connection.setMetadata(uuid: domain.uuid, namespaceURI: ParkedNIC.namespace, prefix: ParkedNIC.prefix, xml: nil)
      }
      do { try connection.clearJournal(uuid: domain.uuid) } catch {
        step(domain, verb, .journalFailed, ["error": .string("\(error)")])
        return .journalFailed
      }
      step(domain, verb, .done)
      return .done
    case .stillPresentAfterDeadline, .removalFailed, .rejected:
      journal.step = .detachPending
      try? connection.writeJournal(uuid: domain.uuid, journal)
      step(domain, verb, .detachPending, ["detail": .string("\(outcome)")])
      return .detachPending
    }
  }

  func readParked(_ uuid: String) -> ParkedNIC? {
    guard let xml = try? connection.metadata(uuid: uuid, namespaceURI: ParkedNIC.namespace) else { return nil }
    return try? ParkedNIC(xml: xml)
  }

  /// Finishes or rolls back a swap an earlier process (or this one, before a
  /// reconnect) left in the journal, so the VM ends with exactly one NIC.
  /// Forward when the new NIC made it in (make before break: it works), back
  /// when it did not (nothing was changed).
  public func reconcile(_ domain: DomainInventory) async -> SwapOutcome? {
    guard var journal = domain.journal else { return nil }
    let verb = journal.operation
    let newPresent = domain.nic(alias: journal.newAlias) != nil
    step(domain, verb, .reconcile, ["journalStep": .string(journal.step.rawValue), "newNICPresent": .bool(newPresent)])
    guard newPresent else {
      // The new NIC never arrived: roll back. The old one is still there
      // unless someone else removed it, which the next cycle will see; its
      // port may have been left redirecting or not learning (holdOldPort).
      if let old = domain.nic(alias: journal.oldAlias), let port = Swapper.bridgeSide(of: old) {
        restoreOldPort(domain, verb, port: port)
      }
      do { try connection.clearJournal(uuid: domain.uuid) } catch { return .journalFailed }
      step(domain, verb, .rolledBack)
      return .attachFailed
    }
    switch journal.operation {
    case .promote where journal.failover:
      return finishFailoverPromotion(domain, journal: &journal, virtioXML: domain.nic(alias: journal.oldAlias)?.xml)
    case .promote: return await finishPromotion(domain, journal: &journal)
    case .demote:
      let member: String? = if case .poolMember(_, let dev)? = domain.nic(alias: journal.oldAlias)?.kind { dev } else { nil }
      var j = journal
      let outcome = await finishDemotion(domain, journal: &j)
      // A member released before the crash was never set up again.
      if outcome == .done, let member { try? setLinkUp(member) }
      return outcome
    }
  }
}
