import VFShiftCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// Builds the device XML vfshift hot-plugs. Pure.
public enum InterfaceXML {
  /// A NIC from a pool network (test bed: passthrough macvtap pool; real
  /// hosts: a `<forward mode='hostdev'>` pool of VFs). libvirt picks a free
  /// member. `mac` nil lets libvirt choose one; passing the virtio NIC's MAC
  /// keeps MAC-matched guest configuration working (then only aliases can
  /// tell the two NICs apart while both exist).
  public static func poolInterface(network: String, mac: String?, alias: String) -> String {
    var s = "<interface type='network'>"
    s += "<source network='\(xmlEscape(network))'/>"
    if let mac { s += "<mac address='\(xmlEscape(mac))'/>" }
    s += "<model type='virtio'/>"
    s += "<alias name='\(xmlEscape(alias))'/>"
    s += "</interface>"
    return s
  }

  /// Where the VF half of a failover pair comes from.
  public enum FailoverSource: Sendable, Equatable {
    /// One VF by its PCI address `DDDD:BB:SS.F`.
    case pciAddress(String)
    /// A `<forward mode='hostdev'>` pool network: libvirt picks the VF.
    case hostdevNetwork(String)
  }

  /// The VF half of a virtio-net failover pair:
  /// `<teaming type='transient' persistent='PERSISTENT_ALIAS'/>` with the
  /// virtio NIC's MAC. libvirt accepts it only for hostdev interfaces (or a
  /// hostdev pool), so its live behaviour needs real VFs and an IOMMU; on the
  /// test bed it is only validated against libvirt's schema.
  public static func failoverTransient(source: FailoverSource, mac: String, persistentAlias: String,
                                       alias: String) throws(ActionError) -> String {
    var s: String
    switch source {
    case .pciAddress(let address):
      let parts = address.split(whereSeparator: { $0 == ":" || $0 == "." }).map(String.init)
      guard parts.count == 4, parts.allSatisfy({ UInt32($0, radix: 16) != nil }) else {
        throw .invalidInput("PCI address '\(address)' is not DDDD:BB:SS.F")
      }
      s = "<interface type='hostdev' managed='yes'>"
      s += "<source><address type='pci' domain='0x\(parts[0])' bus='0x\(parts[1])' slot='0x\(parts[2])' function='0x\(parts[3])'/></source>"
    case .hostdevNetwork(let network):
      s = "<interface type='network'>"
      s += "<source network='\(xmlEscape(network))'/>"
    }
    s += "<mac address='\(xmlEscape(mac))'/>"
    s += "<teaming type='transient' persistent='\(xmlEscape(persistentAlias))'/>"
    s += "<alias name='\(xmlEscape(alias))'/>"
    s += "</interface>"
    return s
  }

  /// The virtio half of a failover pair, as an operator defines it in the domain.
  public static func failoverPersistent(bridge: String, mac: String, alias: String) -> String {
    "<interface type='bridge'><source bridge='\(xmlEscape(bridge))'/><mac address='\(xmlEscape(mac))'/>"
      + "<model type='virtio'/><teaming type='persistent'/><alias name='\(xmlEscape(alias))'/></interface>"
  }

  /// A saved NIC with a user alias it is sure to come back under: its own
  /// `ua-` alias, else `fallback` added. A demotion journals that alias before
  /// the attach, so a kill right after the attach still finds the restored
  /// NIC by name (a libvirt-chosen alias exists only once the NIC is in).
  public static func withUserAlias(_ savedXML: String, fallback: String) throws(ActionError) -> (xml: String, alias: String) {
    let e: XMLTreeElement
    do throws(DomainXMLError) { e = try parseRoot(savedXML, path: "interface") } catch { throw .xml(error) }
    guard e.name == "interface" else { throw .invalidInput("saved XML is <\(e.name)>, not <interface>") }
    if let own = e.elements(forName: "alias").first?.attribute(forName: "name"), own.hasPrefix("ua-") { return (savedXML, own) }
    guard fallback.hasPrefix("ua-") else { throw .invalidInput("alias '\(fallback)' must start with 'ua-' (libvirt user alias)") }
    e.removeChildElements { $0.name == "alias" }
    e.append(XMLTreeElement(name: "alias", localName: "alias", uri: nil, attributes: [("name", fallback)]))
    return (e.xmlString, fallback)
  }

  /// Turns an `<interface>` from a live XML back into something libvirt
  /// accepts for a hot-plug: drops what only a running NIC has (its host
  /// device name, a network port id, the bridge libvirt resolved) and a
  /// libvirt-chosen alias (only `ua-` aliases may be requested); a pool or
  /// network member goes back to `type='network'` so libvirt allocates anew.
  /// Keeps the MAC, model, driver options, a user alias and, with
  /// `keepPCIAddress`, the guest's PCI slot (and so its interface name).
  public static func restorable(_ liveInterfaceXML: String, keepPCIAddress: Bool = true) throws(ActionError) -> String {
    let e: XMLTreeElement
    do throws(DomainXMLError) {
      e = try parseRoot(liveInterfaceXML, path: "interface")
    } catch {
      throw .xml(error)
    }
    guard e.name == "interface" else { throw .invalidInput("saved XML is <\(e.name)>, not <interface>") }
    e.removeChildElements { $0.name == "target" || $0.name == "backenddomain" }
    e.removeChildElements { $0.name == "alias" && !($0.attribute(forName: "name") ?? "").hasPrefix("ua-") }
    if !keepPCIAddress { e.removeChildElements { $0.name == "address" } }
    if let source = e.elements(forName: "source").first, source.attribute(forName: "network") != nil {
      e.replaceAttribute("type", with: "network")
      source.removeAttributes { $0 != "network" }
    }
    return e.xmlString
  }
}
