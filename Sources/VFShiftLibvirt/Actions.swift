import VFShiftCore
import Foundation

/// How a detach ended.
public enum DetachOutcome: Sendable, Equatable {
  /// The device is gone; `confirmedBy` says what showed it.
  case removed(confirmedBy: RemovalConfirmation)
  /// libvirt reported DEVICE_REMOVAL_FAILED: the guest refused. The NIC stays.
  case removalFailed(String)
  /// The guest has not let go by the deadline (e.g. paused, or ignoring the
  /// unplug): the NIC is still in the live XML. Report, retry later, never
  /// answer it with a third NIC. The unplug request stays pending in QEMU.
  case stillPresentAfterDeadline
  /// There was no NIC with that alias to begin with.
  case alreadyAbsent
  /// libvirt refused the detach call itself.
  case rejected(LibvirtError)
}

public enum RemovalConfirmation: Sendable, Equatable {
  case event
  case liveXML
  /// The domain stopped (or vanished), taking the device with it.
  case domainGone
}

/// A detach's outcome and the NIC it was about, as the live XML showed it before.
public struct DetachReport: Sendable, Equatable {
  public var outcome: DetachOutcome
  public var nic: NIC?
  /// A pool member (macvtap passthrough "VF") libvirt has given back to its
  /// pool. libvirt restores its MAC but leaves its link DOWN: the caller must
  /// set it up (VFShiftHost's netlink; `ip link set DEV up`) before another
  /// guest can use it.
  public var releasedPoolMember: String? {
    guard case .removed = outcome, case .poolMember(_, let dev)? = nic?.kind else { return nil }
    return dev
  }
}

extension LibvirtConnection {
  /// The domain's live XML, read as an inventory.
  public func inventory(uuid: String) throws(ActionError) -> DomainInventory {
    let xml: String
    do throws(LibvirtError) { xml = try liveXML(uuid: uuid) } catch { throw .libvirt(error) }
    do throws(DomainXMLError) { return try parseDomainXML(xml) } catch { throw .xml(error) }
  }

  private func inventoryOffloaded(_ uuid: String) async throws(ActionError) -> DomainInventory {
    let r: Result<DomainInventory, ActionError> = await withCheckedContinuation { c in
      DispatchQueue.global().async {
        do throws(ActionError) { c.resume(returning: .success(try self.inventory(uuid: uuid))) } catch {
          c.resume(returning: .failure(error))
        }
      }
    }
    return try r.get()
  }

  /// Attaches a NIC from pool `network` (live only) and returns it as the live
  /// XML shows it (with the member libvirt picked and its host device).
  /// Idempotent: a NIC already carrying `alias` is returned as it is. When the
  /// pool is empty libvirt refuses (`.libvirt`, "…none are available") and
  /// the domain keeps the NICs it had.
  public func attachPoolInterface(uuid: String, network: String, mac: String?, alias: String,
                                  deadline: ContinuousClock.Instant) async throws(ActionError) -> NIC {
    guard alias.hasPrefix("ua-") else { throw .invalidInput("alias '\(alias)' must start with 'ua-' (libvirt user alias)") }
    if let present = try await inventoryOffloaded(uuid).nic(alias: alias) { return present }
    let xml = InterfaceXML.poolInterface(network: network, mac: mac, alias: alias)
    do throws(LibvirtError) {
      try await offload { [self] () throws(LibvirtError) in try attachDevice(uuid: uuid, xml: xml) }
    } catch {
      throw .libvirt(error)
    }
    return try await waitForNIC(uuid: uuid, action: "attachPoolInterface", deadline: deadline) { $0.nic(alias: alias) }
  }

  /// Hot-plugs the VF half of a failover pair (`InterfaceXML.failoverTransient`)
  /// beside the persistent virtio NIC, which stays. Idempotent like
  /// `attachPoolInterface`. libvirt takes transient teaming only on a hostdev
  /// interface or a hostdev pool network: real VFs.
  public func attachFailoverVF(uuid: String, source: InterfaceXML.FailoverSource, mac: String, persistentAlias: String,
                               alias: String, deadline: ContinuousClock.Instant) async throws(ActionError) -> NIC {
    guard alias.hasPrefix("ua-") else { throw .invalidInput("alias '\(alias)' must start with 'ua-' (libvirt user alias)") }
    if let present = try await inventoryOffloaded(uuid).nic(alias: alias) { return present }
    let xml = try InterfaceXML.failoverTransient(source: source, mac: mac, persistentAlias: persistentAlias, alias: alias)
    do throws(LibvirtError) {
      try await offload { [self] () throws(LibvirtError) in try attachDevice(uuid: uuid, xml: xml) }
    } catch {
      throw .libvirt(error)
    }
    return try await waitForNIC(uuid: uuid, action: "attachFailoverVF", deadline: deadline) { $0.nic(alias: alias) }
  }

  /// Re-attaches a NIC saved from a live XML (see `InterfaceXML.restorable`),
  /// in the PCI slot it had if that is free, else wherever libvirt puts it.
  /// Idempotent: when a NIC with the saved user alias (or, without one, the
  /// saved MAC on the same kind of link) is present, returns it.
  public func restoreInterface(uuid: String, savedXML: String,
                               deadline: ContinuousClock.Instant) async throws(ActionError) -> NIC {
    let saved: NIC
    do throws(DomainXMLError) { saved = try parseInterfaceXML(savedXML) } catch { throw .xml(error) }
    let userAlias = saved.alias.flatMap { $0.hasPrefix("ua-") ? $0 : nil }
    let before = try await inventoryOffloaded(uuid)
    func match(_ d: DomainInventory, excluding: Set<String?>) -> NIC? {
      if let userAlias { return d.nic(alias: userAlias) }
      return d.nics.first { $0.mac == saved.mac && sameLink($0.kind, saved.kind) && !excluding.contains($0.alias) }
    }
    if let present = match(before, excluding: []) { return present }
    let existing = Set(before.nics.map(\.alias))

    let withSlot = try InterfaceXML.restorable(savedXML, keepPCIAddress: true)
    do throws(LibvirtError) {
      try await offload { [self] () throws(LibvirtError) in try attachDevice(uuid: uuid, xml: withSlot) }
    } catch {
      // The old slot may be taken meanwhile; any other slot is better than no NIC.
      let anySlot = try InterfaceXML.restorable(savedXML, keepPCIAddress: false)
      guard anySlot != withSlot else { throw .libvirt(error) }
      do throws(LibvirtError) {
        try await offload { [self] () throws(LibvirtError) in try attachDevice(uuid: uuid, xml: anySlot) }
      } catch {
        throw .libvirt(error)
      }
    }
    return try await waitForNIC(uuid: uuid, action: "restoreInterface", deadline: deadline) {
      match($0, excluding: existing)
    }
  }

  private func waitForNIC(uuid: String, action: String, deadline: ContinuousClock.Instant,
                          _ find: (DomainInventory) -> NIC?) async throws(ActionError) -> NIC {
    while true {
      let d = try await inventoryOffloaded(uuid)
      if let nic = find(d) { return nic }
      if ContinuousClock.now >= deadline {
        throw .deadlinePassed(action: action, domain: d.name, detail: "the NIC is not in the live XML")
      }
      try? await Task.sleep(for: .milliseconds(50))
    }
  }

  /// Asks the guest to let go of the NIC with `alias` and waits until
  /// DEVICE_REMOVED arrives or the live XML no longer has it, or the deadline.
  public func detachInterface(uuid: String, alias: String, deadline: ContinuousClock.Instant) async -> DetachReport {
    // Subscribe before asking, so the event cannot slip past.
    let events = subscribe()
    let nic: NIC?
    do throws(ActionError) {
      nic = try await inventoryOffloaded(uuid).nic(alias: alias)
    } catch {
      if case .libvirt(let e) = error { return DetachReport(outcome: .rejected(e), nic: nil) }
      return DetachReport(outcome: .rejected(LibvirtError(function: "detachInterface", domain: uuid, code: -1,
                                                          message: "\(error)")), nic: nil)
    }
    guard let nic else { return DetachReport(outcome: .alreadyAbsent, nic: nil) }
    do throws(LibvirtError) {
      try await offload { [self] () throws(LibvirtError) in try detachDevice(uuid: uuid, alias: alias) }
    } catch where error.isDeviceMissing {
      return DetachReport(outcome: .removed(confirmedBy: .liveXML), nic: nic)
    } catch {
      return DetachReport(outcome: .rejected(error), nic: nic)
    }
    return DetachReport(outcome: await awaitRemoval(uuid: uuid, alias: alias, events: events, deadline: deadline), nic: nic)
  }

  /// Waits for a detach asked for earlier (e.g. one that passed its deadline
  /// while the guest was paused) to complete.
  public func waitForRemoval(uuid: String, alias: String, deadline: ContinuousClock.Instant) async -> DetachOutcome {
    await awaitRemoval(uuid: uuid, alias: alias, events: subscribe(), deadline: deadline)
  }

  private func awaitRemoval(uuid: String, alias: String, events: AsyncStream<DomainEvent>,
                            deadline: ContinuousClock.Instant) async -> DetachOutcome {
    await withTaskGroup(of: DetachOutcome?.self) { group in
      group.addTask {
        for await event in events {
          switch event {
          case .deviceRemoved(uuid, alias): return .removed(confirmedBy: .event)
          case .deviceRemovalFailed(uuid, alias):
            return .removalFailed("libvirt reported DEVICE_REMOVAL_FAILED for '\(alias)': the guest refused the unplug")
          case .lifecycle(uuid, .stopped), .lifecycle(uuid, .undefined): return .removed(confirmedBy: .domainGone)
          default: continue
          }
        }
        return nil
      }
      // The live XML as a backstop for an event lost to a reconnect.
      group.addTask { [self] in
        while !Task.isCancelled {
          try? await Task.sleep(for: .milliseconds(250))
          if Task.isCancelled { return nil }
          if let gone = await removalSeenInLiveXML(uuid: uuid, alias: alias) { return gone }
        }
        return nil
      }
      group.addTask { [self] in
        try? await Task.sleep(until: deadline, clock: .continuous)
        if Task.isCancelled { return nil }
        return await removalSeenInLiveXML(uuid: uuid, alias: alias) ?? .stillPresentAfterDeadline
      }
      for await result in group {
        if let result {
          group.cancelAll()
          return result
        }
      }
      return .stillPresentAfterDeadline
    }
  }

  private func removalSeenInLiveXML(uuid: String, alias: String) async -> DetachOutcome? {
    do throws(ActionError) {
      return try await inventoryOffloaded(uuid).nic(alias: alias) == nil ? .removed(confirmedBy: .liveXML) : nil
    } catch {
      if case .libvirt(let e) = error, e.isNoDomain { return .removed(confirmedBy: .domainGone) }
      return nil
    }
  }

  // MARK: Metadata

  /// Writes the journal into the live metadata and reads it back to confirm.
  public func writeJournal(uuid: String, _ journal: SwapJournal) throws(ActionError) {
    do throws(LibvirtError) {
      try setMetadata(uuid: uuid, namespaceURI: VFShiftNamespace.journal, prefix: VFShiftNamespace.journalPrefix,
                      xml: journal.xmlElement())
    } catch {
      throw .libvirt(error)
    }
    let back = try readJournal(uuid: uuid)
    guard back == journal else {
      throw .deadlinePassed(action: "writeJournal", domain: uuid, detail: "read back \(String(describing: back)), not what was written")
    }
  }

  /// Removes the journal; idempotent.
  public func clearJournal(uuid: String) throws(ActionError) {
    do throws(LibvirtError) {
      try setMetadata(uuid: uuid, namespaceURI: VFShiftNamespace.journal, prefix: VFShiftNamespace.journalPrefix, xml: nil)
    } catch {
      throw .libvirt(error)
    }
    if try readJournal(uuid: uuid) != nil {
      throw .deadlinePassed(action: "clearJournal", domain: uuid, detail: "journal still present after removal")
    }
  }

  public func readJournal(uuid: String) throws(ActionError) -> SwapJournal? {
    let xml: String?
    do throws(LibvirtError) { xml = try metadata(uuid: uuid, namespaceURI: VFShiftNamespace.journal) } catch {
      throw .libvirt(error)
    }
    guard let xml else { return nil }
    do throws(DomainXMLError) { return try SwapJournal(xml: xml) } catch { throw .xml(error) }
  }

  /// Records which virtio NIC is the domain's data NIC (VFShiftNamespace.dataNIC).
  public func recordDataNIC(uuid: String, alias: String) throws(LibvirtError) {
    try setMetadata(uuid: uuid, namespaceURI: VFShiftNamespace.dataNIC, prefix: VFShiftNamespace.dataNICPrefix,
                    xml: "<data-nic alias=\"\(xmlEscape(alias))\"/>")
  }

  /// Labels (or, with nil, unlabels) a domain's QoS class in its live metadata.
  public func setQoSLabel(uuid: String, className: String?) throws(LibvirtError) {
    try setMetadata(uuid: uuid, namespaceURI: VFShiftNamespace.qos, prefix: VFShiftNamespace.qosPrefix,
                    xml: className.map { "<qos class=\"\(xmlEscape($0))\"/>" })
  }
}

/// Same link (bridge, network, pool), ignoring what a live XML adds (resolved bridge, member).
private func sameLink(_ a: NICKind, _ b: NICKind) -> Bool {
  switch (a, b) {
  case (.virtioBridge(let x), .virtioBridge(let y)): x == y
  case (.virtioNetwork(let x, _), .virtioNetwork(let y, _)): x == y
  case (.poolMember(let x, _), .poolMember(let y, _)): x == y
  default: a == b
  }
}
