/// Which of a VM's NICs is its data NIC: the one a pool's VF replaces. A VM
/// also has NICs vfshift must never touch (a management NIC on another
/// bridge), and libvirt lists NICs in the order they were attached, so after
/// a swap the data NIC is no longer first: the policy names it by what does
/// not change, its link or its alias.
public enum DataNICSelector: Sendable, Equatable, Hashable {
  /// A virtio NIC on this Linux bridge (`<interface type='bridge'><source bridge=…>`),
  /// or on a libvirt network built on it.
  case bridge(String)
  /// A virtio NIC on this libvirt network (`<interface type='network'><source network=…>`).
  case network(String)
  /// The NIC with this user alias (`<alias name='ua-…'/>`).
  case alias(String)

  /// The policy's spelling, `bridge: "br0"`, for messages and `status`.
  public var description: String {
    switch self {
    case .bridge(let b): "bridge: \"\(b)\""
    case .network(let n): "network: \"\(n)\""
    case .alias(let a): "alias: \"\(a)\""
    }
  }
}

extension PolicyDecoder {
  /// `dataNIC: { bridge: "br0" }` (or `network:`, or `alias:`): exactly one key.
  mutating func dataNIC(_ o: [String: JSONNode], _ path: String) -> DataNICSelector? {
    guard let node = o["dataNIC"] else { return nil }
    let at = join(path, "dataNIC")
    guard let m = object(node, at, known: ["bridge", "network", "alias"]) else { return nil }
    guard m.count == 1, let key = m.keys.first else {
      fail(node, at, "must name exactly one of bridge, network, alias, got \(m.isEmpty ? "none" : m.keys.sorted().joined(separator: ", "))")
      return nil
    }
    guard let value = string(m, key, at, required: true, owner: node) else { return nil }
    switch key {
    case "bridge": return .bridge(value)
    case "network": return .network(value)
    default: return .alias(value)
    }
  }
}
