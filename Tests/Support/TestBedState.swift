import Foundation

/// What `deploy/testbed/up` built, as it writes it to
/// `/run/vfshift-testbed/state.json`.
public struct TestBedState: Decodable, Sendable, Equatable {
  public struct Guest: Decodable, Sendable, Equatable {
    public var name: String
    public var uuid: String
    /// The data address the bed's dnsmasq leases to the data NIC's MAC (198.18.0.(10+i)).
    public var ip: String
    /// MAC of its initial virtio NIC (alias `ua-net0`).
    public var mac: String
    /// QoS class from `<vfshift:qos class=…>`; nil for an unmanaged VM.
    public var label: String?
    /// The guest's serial console (its /init logs each NIC it sees there).
    public var serialLog: String?
    /// The management NIC, on `managementBridge`, which vfshift must never
    /// touch: its alias, MAC and leased address (198.18.1.(10+i)).
    public var managementAlias: String?
    public var managementMAC: String?
    public var managementIP: String?

    /// A guest with a QoS label is one vfshift manages.
    public var isManaged: Bool { label != nil }
  }

  /// Linux bridge the guests' virtio NICs and the pool members' peers sit on.
  public var bridge: String
  /// Network namespace holding the traffic source.
  public var namespace: String
  /// The traffic source's address inside `namespace`.
  public var sourceIP: String
  /// libvirt network of `<forward mode='passthrough'>` veth "VFs".
  public var poolNetwork: String
  /// The bridge of the guests' management NICs (its own subnet, 198.18.1.0/24).
  public var managementBridge: String?
  /// dnsmasq's log: every lease it gives, by MAC.
  public var dhcpLog: String?
  /// Host devices the pool hands out (veth ends; libvirt leaves one DOWN after a detach).
  public var poolMembers: [String]
  public var guests: [Guest]
  /// TCP port on every guest that discards what it receives.
  public var sinkPort: Int?
  /// TCP port on every guest that sends zeros to whoever connects.
  public var sourcePort: Int?

  public func guest(named name: String) -> Guest? { guests.first { $0.name == name } }
  /// Guests with a QoS label, in the order `up` created them.
  public var managedGuests: [Guest] { guests.filter(\.isManaged) }
}
