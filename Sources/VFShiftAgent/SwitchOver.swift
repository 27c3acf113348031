import VFShiftCore
import VFShiftHost
import VFShiftLibvirt

/// How a swap works the bridge between the guest's two NICs.
public enum SwitchOverMode: String, Sendable {
  /// Not at all: the switch-over before #12's cut, for side-by-side runs.
  case plain
  /// The old port stops learning from the attach (the cut before the redirect).
  case quiet
  /// The DHCP replies redirected from the attach, the bridge steered at the confirmation.
  case redirect
}

/// The host side of the switch-over (docs/swap-timeline.md). Measured on the
/// bed: the pings a swap lost were sent between the detach request and the
/// host removing the old NIC's device, while the bridge still forwarded the
/// guest's MAC to a NIC the guest had already let go of. So, once the guest
/// uses the new NIC and before the old one is unplugged, the FDB entry is
/// pointed at the new NIC's bridge port and the old port stops learning (the
/// guest still answers through the old NIC until it is gone, which would pull
/// the entry back).
extension Swapper {
  /// The old NIC's port, when it was set not to learn (learning goes back on after the detach).
  func steerBeforeDetach(_ domain: DomainInventory, _ verb: Verb, oldAlias: String, newAlias: String) -> String? {
    guard switchOver != .plain else {
      step(domain, verb, .steerSkipped, ["reason": "VFSHIFT_SWITCHOVER=plain"])
      return nil
    }
    guard let old = domain.nic(alias: oldAlias), let new = domain.nic(alias: newAlias) else {
      step(domain, verb, .steerSkipped, ["reason": "the old or the new NIC is not in the inventory"])
      return nil
    }
    guard old.mac == new.mac else {
      step(domain, verb, .steerSkipped, ["reason": .string("the NICs have different MACs (\(old.mac), \(new.mac)): nothing to move")])
      return nil
    }
    guard let oldPort = Swapper.bridgeSide(of: old), let newPort = Swapper.bridgeSide(of: new) else {
      // A real VF in legacy mode has no bridge port: its NIC's eswitch
      // delivers by MAC, which only real hardware can show.
      step(domain, verb, .steerSkipped, ["reason": "no bridge port for the old or the new NIC"])
      return nil
    }
    do {
      try setBridgePortLearning(oldPort, false)
      try pointBridgeFDB(mac: new.mac, at: newPort)
    } catch {
      try? setBridgePortLearning(oldPort, true)
      step(domain, verb, .steerFailed, ["error": .string("\(error)"), "oldPort": .string(oldPort), "newPort": .string(newPort)])
      return nil
    }
    step(domain, verb, .steered, ["oldPort": .string(oldPort), "newPort": .string(newPort), "mac": .string(new.mac)])
    // The entry now points at the new port and stays: the redirect has done its part.
    unredirect(domain, verb, port: oldPort)
    return oldPort
  }

  /// From the attach on, the DHCP server's replies to the guest reach its
  /// new NIC. Measured (docs/swap-timeline.md): the guest answers through its
  /// older NIC, its first route, until that NIC is gone, and each such frame
  /// pulls the bridge's entry back to the old port; the server's offer to the
  /// new NIC, sent to that MAC, then went to the NIC that had not asked, and
  /// the guest's client asked again a second later. Redirecting only those
  /// replies leaves the rest of the guest's traffic where the guest has it;
  /// the old port's learning off (the fallback, and `quiet`) instead moves
  /// all of it onto the new NIC at its first frame, while the guest's DHCP
  /// client may still read every frame of that NIC.
  /// Returns the old port when it was changed.
  func holdOldPort(_ domain: DomainInventory, _ verb: Verb, old: NIC, new: NIC) -> String? {
    guard switchOver != .plain, old.mac == new.mac, let port = Swapper.bridgeSide(of: old) else { return nil }
    if switchOver == .redirect {
      if let newPort = Swapper.bridgeSide(of: new) {
        do {
          let how = try redirectDHCPReplies(from: port, to: newPort)
          step(domain, verb, .dhcpRedirected, ["port": .string(port), "to": .string(newPort),
                                               "qdisc": .string(how == .onOwnQdisc ? "added" : "existing clsact")])
          return port
        } catch {
          step(domain, verb, .steerFailed, ["error": .string("\(error)"), "port": .string(port), "fallback": "learning-off"])
        }
      } else {
        step(domain, verb, .steerFailed, ["reason": "no bridge port for the new NIC", "port": .string(port), "fallback": "learning-off"])
      }
    }
    do { try setBridgePortLearning(port, false) } catch {
      step(domain, verb, .steerFailed, ["error": .string("\(error)"), "port": .string(port)])
      return nil
    }
    step(domain, verb, .learningOff, ["port": .string(port)])
    return port
  }

  /// The old port as it was: a pool member's port outlives the swap, and a
  /// detach still pending leaves the guest on both NICs. Only what is found
  /// changed is touched and logged: reconcile's rollback cannot know how far
  /// the killed process got, and a tap goes with its NIC.
  func restoreOldPort(_ domain: DomainInventory, _ verb: Verb, port: String) {
    unredirect(domain, verb, port: port)
    guard bridgePortLearns(port) == false else { return }
    do { try setBridgePortLearning(port, true); step(domain, verb, .learningRestored, ["port": .string(port)]) }
    catch { step(domain, verb, .steerFailed, ["error": .string("\(error)"), "port": .string(port)]) }
  }

  func unredirect(_ domain: DomainInventory, _ verb: Verb, port: String) {
    do { if try removeDHCPRedirect(port) { step(domain, verb, .dhcpRedirectRemoved, ["port": .string(port)]) } }
    catch { step(domain, verb, .steerFailed, ["error": .string("\(error)"), "port": .string(port)]) }
  }

  /// The bridge port a NIC's frames enter the bridge by: a tap is one; a
  /// pool member is reached through its own port or its veth peer.
  static func bridgeSide(of nic: NIC) -> String? {
    switch nic.kind {
    case .virtioBridge, .virtioNetwork: return nic.hostDevice.flatMap { bridgePort(of: $0) }
    case .poolMember(_, let member): return bridgePort(of: member)
    default: return nil
    }
  }

  /// After a demotion, a real VF's MAC cleared on its PF, so the PF stops
  /// delivering the guest's MAC to a VF no guest has.
  func clearVFMACOnPF(_ domain: DomainInventory, vf: NIC?, pool: String) {
    guard case .hostdevVF(let address, _)? = vf?.kind, let pci = PCIAddress(address),
          let location = try? virtualFunctionLocation(pci) else {
      step(domain, .demote, .pfMACSkipped, ["reason": .string("pool \(pool): the VF NIC is not a real VF with a PF on this host")])
      return
    }
    do {
      try setVFMAC(pf: location.pf, vf: location.index)
      step(domain, .demote, .pfMACCleared, ["pf": .string(location.pf), "vf": .number(Double(location.index))])
    } catch {
      step(domain, .demote, .pfMACSkipped, ["reason": .string("\(error)")])
    }
  }
}

extension Swapper {
  /// The domain as libvirt has it now (the new NIC's host device included),
  /// or as last seen when the read fails.
  func currentInventory(_ domain: DomainInventory) -> DomainInventory {
    (try? connection.inventory(uuid: domain.uuid)) ?? domain
  }
}
