import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

// Failover mode (pool `mode: failover`): the VM's data NIC is the persistent
// half of a virtio-net failover pair (`<teaming type='persistent'/>`). A
// promotion hot-plugs the VF as its transient half, same MAC, and keeps the
// virtio NIC: the guest's net_failover driver enslaves both under one
// failover netdev and sends through the VF (primary) while its link is up
// (kernel Documentation/networking/net_failover.rst, libvirt formatdomain
// "Teaming"). A demotion unplugs the VF; the guest falls back to the virtio
// standby, which never left. Needs real VFs: libvirt takes transient teaming
// on hostdev interfaces only (the test bed's pool is macvtap, docs/policy.md).
extension Swapper {
  /// The VF half to hot-plug for `nics`, or why this VM cannot have one.
  /// Pure: the refusals and the XML are unit-tested.
  public static func failoverPromotion(pool: VFPool, nics: ManagedNICs) -> Result<(xml: String, persistentAlias: String, mac: String), FailoverRefusal> {
    guard let virtio = nics.virtio else { return .failure(FailoverRefusal(reason: "no data virtio NIC to pair the VF with")) }
    guard virtio.teaming == .persistent else {
      return .failure(FailoverRefusal(reason: "pool \(pool.name) is in failover mode but the data NIC \(virtio.alias ?? virtio.mac) has no <teaming type='persistent'/>"))
    }
    guard let alias = virtio.alias, alias.hasPrefix("ua-") else {
      return .failure(FailoverRefusal(reason: "the data NIC \(virtio.mac) has no user alias (ua-…) for the VF's <teaming persistent='…'/> to name"))
    }
    do {
      let xml = try InterfaceXML.failoverTransient(source: .hostdevNetwork(pool.network), mac: virtio.mac,
                                                   persistentAlias: alias, alias: Swapper.vfAlias)
      return .success((xml, alias, virtio.mac))
    } catch {
      return .failure(FailoverRefusal(reason: "\(error)"))
    }
  }

  func promoteFailover(_ domain: DomainInventory, to pool: VFPool, nics: ManagedNICs) async -> SwapOutcome {
    let pair: (xml: String, persistentAlias: String, mac: String)
    switch Swapper.failoverPromotion(pool: pool, nics: nics) {
    case .success(let p): pair = p
    case .failure(let refusal):
      step(domain, .promote, .refused, ["reason": .string(refusal.reason), "mode": "failover"])
      return .refused
    }
    var journal = SwapJournal(operation: .promote, pool: pool.network, oldAlias: pair.persistentAlias,
                              newAlias: Swapper.vfAlias, step: .attaching,
                              startedAtUnixMilliseconds: Swapper.nowMilliseconds(),
                              savedInterfaceXML: nil, failover: true)
    do { try connection.writeJournal(uuid: domain.uuid, journal) } catch {
      step(domain, .promote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    step(domain, .promote, .journal, ["mode": "failover"])
    do {
      let nic = try await connection.attachFailoverVF(uuid: domain.uuid, source: .hostdevNetwork(pool.network), mac: pair.mac,
                                                      persistentAlias: pair.persistentAlias, alias: Swapper.vfAlias,
                                                      deadline: .now + attachDeadline)
      step(domain, .promote, .attached, ["device": .string(nic.hostDevice ?? "-"), "mac": .string(nic.mac), "mode": "failover"])
    } catch {
      step(domain, .promote, .attachFailed, ["error": .string("\(error)")])
      try? connection.clearJournal(uuid: domain.uuid)
      return .attachFailed
    }
    // No guest confirmation: no path is broken (the virtio standby stays),
    // and the guest agent cannot show it either — the address stays on the
    // failover master, whose MAC the VF shares.
    return finishFailoverPromotion(domain, journal: &journal, virtioXML: nics.virtio?.xml)
  }

  /// The VF is in: the swap is done. The parked record keeps when the VM got
  /// its VF (the dwell across restarts); the virtio NIC it saves is the one
  /// still plugged, so a replace-mode demotion finds it present and only
  /// unplugs the VF.
  func finishFailoverPromotion(_ domain: DomainInventory, journal: inout SwapJournal, virtioXML: String?) -> SwapOutcome {
    if let virtioXML, let saved = try? InterfaceXML.restorable(virtioXML) {
      let parked = ParkedNIC(pool: journal.pool, sinceUnixMilliseconds: Swapper.nowMilliseconds(), savedInterfaceXML: saved)
      try? connection.setMetadata(uuid: domain.uuid, namespaceURI: ParkedNIC.namespace, prefix: ParkedNIC.prefix,
                                  xml: parked.xmlElement())
    }
    do { try connection.clearJournal(uuid: domain.uuid) } catch {
      step(domain, .promote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    step(domain, .promote, .done, ["mode": "failover"])
    return .done
  }

  func demoteFailover(_ domain: DomainInventory, from pool: VFPool, nics: ManagedNICs) async -> SwapOutcome {
    guard let vf = nics.vf, let vfAlias = vf.alias else {
      step(domain, .demote, .refused, ["reason": "no VF NIC with an alias", "mode": "failover"])
      return .refused
    }
    // Unplugging a VF whose standby is gone would leave the VM without a network.
    guard case .transient(let persistent)? = vf.teaming, domain.nic(alias: persistent) != nil else {
      step(domain, .demote, .refused, ["reason": "the VF is not the transient half of a pair whose persistent virtio NIC is present",
                                       "mode": "failover"])
      return .refused
    }
    var journal = SwapJournal(operation: .demote, pool: pool.network, oldAlias: vfAlias, newAlias: persistent,
                              step: .detaching, startedAtUnixMilliseconds: Swapper.nowMilliseconds(),
                              savedInterfaceXML: nil, failover: true)
    do { try connection.writeJournal(uuid: domain.uuid, journal) } catch {
      step(domain, .demote, .journalFailed, ["error": .string("\(error)")])
      return .journalFailed
    }
    step(domain, .demote, .journal, ["mode": "failover"])
    step(domain, .demote, .detachRequested, ["alias": .string(vfAlias), "mode": "failover"])
    let report = await connection.detachInterface(uuid: domain.uuid, alias: vfAlias, deadline: .now + detachDeadline)
    return settle(domain, .demote, report.outcome, journal: &journal, releasedMember: report.releasedPoolMember)
  }
}

public struct FailoverRefusal: Error, Equatable, CustomStringConvertible {
  public var reason: String
  public var description: String { reason }
}

/// A failover pair as the live XML shows it settled: the VF's transient
/// teaming names the data virtio NIC's alias. Both NICs present is then the
/// VM on its VF, not a swap half done.
func isFailoverPair(_ domain: DomainInventory, _ at: ManagedNICPositions) -> Bool {
  guard let v = at.virtio, let f = at.vf, domain.nics[v].teaming == .persistent,
        case .transient(let persistent)? = domain.nics[f].teaming else { return false }
  return domain.nics[v].alias == persistent
}
