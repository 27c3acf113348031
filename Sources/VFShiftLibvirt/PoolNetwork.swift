import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What a libvirt pool network offers: a `<forward mode='hostdev'>` VF pool
/// (members as `<address>` or a `<pf dev>` whose VFs libvirt enumerates) or a
/// `<forward mode='passthrough'>` pool of whole netdevs (the test bed's stand-in).
public struct PoolNetwork: Sendable, Equatable {
  public var name: String
  public var mode: String
  /// Members libvirt lists (netdevs for passthrough, PCI addresses for hostdev).
  public var members: [String]
  /// The PF named by `<pf dev>`, if any: its VFs come from sysfs.
  public var pf: String?
  /// Members in use right now, as libvirt counts them (`connections`).
  public var connections: Int

  public init(xml: String) throws(DomainXMLError) {
    guard let root = parseXMLTree(xml), root.name == "network" else {
      throw DomainXMLError(path: "network", problem: "no <network> element")
    }
    name = root.elements(forName: "name").first?.stringValue ?? "?"
    guard let forward = root.elements(forName: "forward").first,
          let mode = forward.attribute(forName: "mode") else {
      throw DomainXMLError(path: "network[\(name)]/forward", problem: "has no <forward mode=…>: not a pool network")
    }
    guard ["hostdev", "passthrough"].contains(mode) else {
      throw DomainXMLError(path: "network[\(name)]/forward@mode", problem: "is '\(mode)'; a VF pool is 'hostdev' (or 'passthrough' standing in for one)")
    }
    self.mode = mode
    pf = forward.elements(forName: "pf").first?.attribute(forName: "dev")
    members = forward.elements(forName: "interface").compactMap { $0.attribute(forName: "dev") }
      + forward.elements(forName: "address").map { a in
        ["domain", "bus", "slot", "function"].compactMap { a.attribute(forName: $0) }.joined(separator: ":")
      }
    connections = Int(forward.attribute(forName: "connections") ?? "0") ?? 0
  }
}

extension LibvirtConnection {
  public func poolNetwork(name: String) throws -> PoolNetwork {
    let xml = try connected("virNetworkGetXMLDesc").networkXML(name: name)
    return try PoolNetwork(xml: xml)
  }

  /// How many VFs (or stand-in members) the pool network hands out; a `<pf>`
  /// pool without listed members needs sysfs to say.
  public func poolNetworkSize(name: String) throws -> Int {
    let pool = try poolNetwork(name: name)
    guard !pool.members.isEmpty || pool.pf == nil else {
      throw DomainXMLError(path: "network[\(name)]", problem: "lists no members; its VFs come from PF \(pool.pf!) in sysfs")
    }
    return pool.members.count
  }
}
