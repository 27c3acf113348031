import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import VFShiftCore

/// The XML namespaces vfshift writes into a domain's `<metadata>`.
public enum VFShiftNamespace {
  /// `<vfshift:qos xmlns:vfshift="https://vfshift.dev/ns/qos/1" class="high"/>`: the operator's QoS label.
  public static let qos = "https://vfshift.dev/ns/qos/1"
  public static let qosPrefix = "vfshift"
  /// The swap journal (see `SwapJournal`).
  public static let journal = "https://vfshift.dev/ns/journal/1"
  public static let journalPrefix = "vfshift-journal"
  /// `<data-nic alias='ua-net0'/>`: which virtio NIC is the data NIC, written
  /// by the swapper before each swap's attach. A demotion re-attaches the data
  /// NIC last, so beside a second virtio NIC on the same bridge the order no
  /// longer tells which one vfshift swapped.
  public static let dataNIC = "https://vfshift.dev/ns/data-nic/1"
  public static let dataNICPrefix = "vfshift-data-nic"
  /// The guest's refusals (see `RefusalRecord`).
  public static let refusal = "https://vfshift.dev/ns/refused/1"
  public static let refusalPrefix = "vfshift-refused"
}

/// Where in a domain's XML something could not be read, and why.
public struct DomainXMLError: Error, Sendable, Equatable, CustomStringConvertible {
  /// XPath-like, e.g. `domain/devices/interface[2]/mac@address`.
  public var path: String
  public var problem: String
  public init(path: String, problem: String) { self.path = path; self.problem = problem }
  public var description: String { "\(path): \(problem)" }
}

/// How a NIC reaches the network.
public enum NICKind: Sendable, Equatable, Hashable {
  /// A tap (`vnetN`) on a Linux bridge: `<interface type='bridge'>`.
  case virtioBridge(bridge: String)
  /// A tap on a libvirt network with a bridge: `<interface type='network'>`.
  case virtioNetwork(network: String, bridge: String?)
  /// A member of a libvirt pool network handed out whole: a macvtap in
  /// passthrough mode (the test bed's VF stand-in), live XML `type='direct'`
  /// with the network and the member it got.
  case poolMember(network: String, memberDev: String)
  /// A macvtap on a host device named in the domain itself, not from a pool.
  case direct(dev: String, mode: String?)
  /// A PCI device (a real VF) passed to the guest, `type='hostdev'`, possibly
  /// from a hostdev pool network. `pciAddress` is `DDDD:BB:SS.F`.
  case hostdevVF(pciAddress: String, network: String?)
  /// Anything else (user, vhostuser, …): seen, never touched.
  case other(type: String)
}

/// The role of a NIC in a virtio-net failover pair.
public enum Teaming: Sendable, Equatable, Hashable {
  /// The virtio half the guest keeps: `<teaming type='persistent'/>`.
  case persistent
  /// The VF half, paired with the virtio NIC whose alias it names.
  case transient(persistentAlias: String)
}

/// One NIC as the live XML shows it.
public struct NIC: Sendable, Equatable, Hashable {
  public var kind: NICKind
  /// `<model type=…>` (virtio, e1000, …); nil for hostdev.
  public var model: String?
  public var mac: String
  /// libvirt's alias: `net0` when libvirt chose it, `ua-…` when the definer did.
  public var alias: String?
  /// The host's netdev for this NIC (`<target dev>`: vnetN, macvtapN), nil for a VF.
  public var hostDevice: String?
  /// Which way round the host counts this NIC's traffic.
  public var hostDeviceKind: HostDeviceKind?
  public var teaming: Teaming?
  /// The `<interface>` element as the live XML has it, to restore it from.
  public var xml: String

  public init(kind: NICKind, model: String?, mac: String, alias: String?, hostDevice: String?,
              hostDeviceKind: HostDeviceKind?, teaming: Teaming?, xml: String) {
    self.kind = kind; self.model = model; self.mac = mac; self.alias = alias
    self.hostDevice = hostDevice; self.hostDeviceKind = hostDeviceKind; self.teaming = teaming; self.xml = xml
  }

  /// The pool network this NIC came from, if it is a pool member or a VF from a pool.
  public var poolNetwork: String? {
    switch kind {
    case .poolMember(let n, _): n
    case .hostdevVF(_, let n): n
    default: nil
    }
  }
}

/// What vfshift knows about one running domain, all read from its live XML.
public struct DomainInventory: Sendable, Equatable, Hashable {
  public var uuid: String
  public var name: String
  /// The `class` of the `qos` element in vfshift's QoS namespace, if labelled.
  public var qosLabel: String?
  /// A swap in progress (or interrupted), if any.
  public var journal: SwapJournal?
  public var nics: [NIC]
  /// The alias of the NIC the last swap took as the data NIC (VFShiftNamespace.dataNIC).
  public var dataNICAlias: String?
  /// The guest's last refusals of a NIC and the hold they earned (VFShiftNamespace.refusal).
  public var refusal: RefusalRecord?

  public init(uuid: String, name: String, qosLabel: String?, journal: SwapJournal?, nics: [NIC], dataNICAlias: String? = nil,
              refusal: RefusalRecord? = nil) {
    self.uuid = uuid; self.name = name; self.qosLabel = qosLabel; self.journal = journal; self.nics = nics
    self.dataNICAlias = dataNICAlias; self.refusal = refusal
  }

  public func nic(alias: String) -> NIC? { nics.first { $0.alias == alias } }
}

/// Reads a domain's (live) XML. Pure; any input either parses or throws an
/// error naming the element.
public func parseDomainXML(_ xml: String) throws(DomainXMLError) -> DomainInventory {
  let root = try parseRoot(xml, path: "domain")
  guard root.name == "domain" else {
    throw DomainXMLError(path: root.name, problem: "root element is <\(root.name)>, not <domain>")
  }
  let uuid = try requiredText(root, "uuid", path: "domain")
  let name = try requiredText(root, "name", path: "domain")

  var qosLabel: String?
  var journal: SwapJournal?
  var dataNICAlias: String?
  var refusal: RefusalRecord?
  if let metadata = root.elements(forName: "metadata").first {
    for e in metadata.childElements {
      switch (e.uri, e.localName) {
      case (VFShiftNamespace.qos, "qos"):
        guard let c = e.attribute(forName: "class"), !c.isEmpty else {
          throw DomainXMLError(path: "domain/metadata/qos@class", problem: "QoS label without a class attribute")
        }
        qosLabel = c
      case (VFShiftNamespace.journal, "journal"):
        do throws(DomainXMLError) {
          journal = try SwapJournal(element: e)
        } catch {
          throw DomainXMLError(path: "domain/metadata/\(error.path)", problem: error.problem)
        }
      case (VFShiftNamespace.dataNIC, "data-nic"):
        guard let a = e.attribute(forName: "alias"), !a.isEmpty else {
          throw DomainXMLError(path: "domain/metadata/data-nic@alias", problem: "data NIC record without an alias attribute")
        }
        dataNICAlias = a
      case (VFShiftNamespace.refusal, "refused"):
        do throws(DomainXMLError) {
          refusal = try RefusalRecord(element: e)
        } catch {
          throw DomainXMLError(path: "domain/metadata/\(error.path)", problem: error.problem)
        }
      default:
        continue
      }
    }
  }

  var nics: [NIC] = []
  let interfaces = root.elements(forName: "devices").first?.elements(forName: "interface") ?? []
  for (i, element) in interfaces.enumerated() {
    nics.append(try parseInterface(element, path: "domain/devices/interface[\(i + 1)]"))
  }
  return DomainInventory(uuid: uuid, name: name, qosLabel: qosLabel, journal: journal, nics: nics, dataNICAlias: dataNICAlias,
                         refusal: refusal)
}

/// Reads one `<interface>` element given on its own.
public func parseInterfaceXML(_ xml: String) throws(DomainXMLError) -> NIC {
  let root = try parseRoot(xml, path: "interface")
  guard root.name == "interface" else {
    throw DomainXMLError(path: root.name, problem: "expected <interface>, found <\(root.name)>")
  }
  return try parseInterface(root, path: "interface")
}

func parseRoot(_ xml: String, path: String) throws(DomainXMLError) -> XMLTreeElement {
  // FoundationXML on Linux dereferences the NULL document libxml2 returns for
  // an empty string or one holding a NUL byte instead of throwing (found by
  // Benchmarks/fuzz-domainxml). XML 1.0 allows no NUL anywhere, so refusing
  // it here turns nothing valid away.
  guard !xml.isEmpty else { throw DomainXMLError(path: path, problem: "empty document") }
  if let offset = xml.utf8.firstIndex(of: 0).map({ xml.utf8.distance(from: xml.utf8.startIndex, to: $0) }) {
    throw DomainXMLError(path: path, problem: "NUL byte at offset \(offset), which XML does not allow")
  }
  // FoundationXML substitutes entities, external ones too (a SYSTEM entity
  // reads any file the agent can). libvirt never writes a DTD, so refuse one.
  if xml.contains("<!DOCTYPE") {
    throw DomainXMLError(path: path, problem: "a DTD (<!DOCTYPE>) is refused: libvirt never writes one, and its entities can read host files")
  }
  guard let root = parseXMLTree(xml) else {
    throw DomainXMLError(path: path, problem: "document has no root element")
  }
  return root
}

private func requiredText(_ parent: XMLTreeElement, _ name: String, path: String) throws(DomainXMLError) -> String {
  guard let s = parent.elements(forName: name).first?.stringValue.trimmingCharacters(in: .whitespacesAndNewlines),
        !s.isEmpty else {
    throw DomainXMLError(path: "\(path)/\(name)", problem: "missing or empty")
  }
  return s
}

private func attribute(_ e: XMLTreeElement?, _ name: String) -> String? {
  guard let v = e?.attribute(forName: name), !v.isEmpty else { return nil }
  return v
}

private func parseInterface(_ e: XMLTreeElement, path: String) throws(DomainXMLError) -> NIC {
  guard let type = attribute(e, "type") else {
    throw DomainXMLError(path: "\(path)@type", problem: "interface without a type")
  }
  let source = e.elements(forName: "source").first
  guard let mac = attribute(e.elements(forName: "mac").first, "address") else {
    throw DomainXMLError(path: "\(path)/mac@address", problem: "interface without a MAC address")
  }
  let hostDevice = attribute(e.elements(forName: "target").first, "dev")
  let model = attribute(e.elements(forName: "model").first, "type")
  let alias = attribute(e.elements(forName: "alias").first, "name")

  var teaming: Teaming?
  if let t = e.elements(forName: "teaming").first {
    switch attribute(t, "type") {
    case "persistent":
      teaming = .persistent
    case "transient":
      guard let p = attribute(t, "persistent") else {
        throw DomainXMLError(path: "\(path)/teaming@persistent", problem: "transient teaming without the persistent NIC's alias")
      }
      teaming = .transient(persistentAlias: p)
    case let other:
      throw DomainXMLError(path: "\(path)/teaming@type", problem: "unknown teaming type '\(other ?? "")'")
    }
  }

  let kind: NICKind
  let deviceKind: HostDeviceKind?
  func require(_ name: String, _ what: String) throws(DomainXMLError) -> String {
    guard let v = attribute(source, name) else {
      throw DomainXMLError(path: "\(path)/source@\(name)", problem: "\(type) interface without \(what)")
    }
    return v
  }
  switch type {
  case "bridge":
    kind = .virtioBridge(bridge: try require("bridge", "a bridge"))
    deviceKind = .tap
  case "network":
    kind = .virtioNetwork(network: try require("network", "a network"), bridge: attribute(source, "bridge"))
    deviceKind = .tap
  case "ethernet":
    kind = .other(type: type)
    deviceKind = .tap
  case "direct":
    let dev = try require("dev", "a host device")
    if let network = attribute(source, "network") {
      kind = .poolMember(network: network, memberDev: dev)
    } else {
      kind = .direct(dev: dev, mode: attribute(source, "mode"))
    }
    deviceKind = .macvtap
  case "hostdev":
    guard let address = source?.elements(forName: "address").first else {
      throw DomainXMLError(path: "\(path)/source/address", problem: "hostdev interface without a PCI address")
    }
    kind = .hostdevVF(pciAddress: try pciAddress(address, path: "\(path)/source/address"),
                      network: attribute(source, "network"))
    deviceKind = .virtualFunction
  default:
    kind = .other(type: type)
    deviceKind = nil
  }
  return NIC(kind: kind, model: model, mac: mac.lowercased(), alias: alias, hostDevice: hostDevice,
             hostDeviceKind: deviceKind, teaming: teaming, xml: e.xmlString)
}

/// `<address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x2'/>` → `0000:03:10.2`.
private func pciAddress(_ e: XMLTreeElement, path: String) throws(DomainXMLError) -> String {
  func field(_ name: String, digits: Int) throws(DomainXMLError) -> String {
    guard let raw = attribute(e, name) else {
      throw DomainXMLError(path: "\(path)@\(name)", problem: "PCI address without \(name)")
    }
    let hex = raw.hasPrefix("0x") ? String(raw.dropFirst(2)) : raw
    guard let v = UInt32(hex, radix: 16) else {
      throw DomainXMLError(path: "\(path)@\(name)", problem: "'\(raw)' is not a hexadecimal number")
    }
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, digits - s.count)) + s
  }
  return "\(try field("domain", digits: 4)):\(try field("bus", digits: 2)):\(try field("slot", digits: 2)).\(try field("function", digits: 1))"
}
