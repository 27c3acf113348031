import VFShiftCore
import VFShiftLibvirt

/// Whether the guest uses a NIC just attached to it: the swap breaks the old
/// path only once it does (a stock guest takes its address by DHCP on a NIC
/// that appears, which may take seconds, or never if it has no driver).
enum GuestUse: Equatable {
  case confirmed(by: String)
  case notConfirmed(why: String)
}

extension Swapper {
  /// The guest's NIC names now, or nil when its agent does not answer.
  func guestNICs(_ uuid: String) async -> [GuestInterface]? {
    guard let reply = try? await connection.guestAgentCommandOffloaded(uuid: uuid, guestNetworkInterfacesCommand,
                                                                         timeoutSeconds: 1) else { return nil }
    return try? parseGuestNetworkInterfaces(reply)
  }

  /// Polls until the guest shows it uses `nic`: its agent lists a NIC it did
  /// not have before (`before`) with this MAC and an IPv4 address, or —
  /// without an agent — libvirt's counters of the new NIC show the guest
  /// transmitting on it. Gives up at `within`.
  func confirmGuestUses(_ domain: DomainInventory, nic: NIC, before: [GuestInterface]?, within: Duration) async -> GuestUse {
    let deadline = ContinuousClock.now + within
    let device = nic.hostDevice
    let first = before != nil ? nil : device.flatMap { try? connection.interfaceStats(uuid: domain.uuid, device: $0) }
    guard before != nil || first != nil else {
      return .notConfirmed(why: "no guest agent answers and libvirt has no counters for the new NIC: nothing shows the guest uses it")
    }
    let known = Set((before ?? []).map(\.name))
    while true {
      if before != nil, let now = await guestNICs(domain.uuid),
         let used = now.first(where: { !known.contains($0.name) && $0.mac == nic.mac && !$0.ipv4.isEmpty }) {
        return .confirmed(by: "guest agent: \(used.name) has \(used.ipv4.joined(separator: ", "))")
      }
      // Counters only without an agent: a stray frame on the new port says
      // nothing about the guest when its agent can say more.
      if before == nil, let first, let device, let now = try? connection.interfaceStats(uuid: domain.uuid, device: device),
         (now.txPackets ?? 0) > (first.txPackets ?? 0) {
        return .confirmed(by: "counters: the guest sent \((now.txPackets ?? 0) - (first.txPackets ?? 0)) packet(s) on \(device)")
      }
      if ContinuousClock.now >= deadline {
        return .notConfirmed(why: before != nil
          ? "the guest agent shows no new NIC with \(nic.mac) and an IPv4 address after \(within)"
          : "the guest sent nothing on \(device ?? "the new NIC") in \(within)")
      }
      try? await Task.sleep(for: .milliseconds(100))
    }
  }
}
