import Foundation
import Testing
import VFShiftLibvirt

// Hand-written bad domain and journal XML, each with the exact error it must
// get; with VFSHIFT_BAD_INPUT_TABLE=<dir> set the same rows are written there
// as Markdown for docs/reliability.md (Benchmarks/fuzz/bad-input-table).

struct BadXML: Sendable, CustomTestStringConvertible {
  var what: String
  var xml: String
  var error: String
  var testDescription: String { what }
}

private func domain(_ devices: String, metadata: String = "") -> String {
  "<domain type='qemu'><name>g</name><uuid>5a1f3e0c-8d2b-4c55-9e0f-0123456789ab</uuid>"
    + (metadata.isEmpty ? "" : "<metadata>\(metadata)</metadata>") + "<devices>\(devices)</devices></domain>"
}

private let mac = "<mac address='52:54:00:12:00:11'/>"
private let journalNS = "xmlns:j='https://vfshift.dev/ns/journal/1'"

let badDomainXML: [BadXML] = [
  BadXML(what: "empty document (was a SEGV, found by fuzz-domainxml)", xml: "", error: "domain: empty document"),
  BadXML(what: "NUL byte (was a SEGV, found by fuzz-domainxml)", xml: "<\0domain/>",
         error: "domain: NUL byte at offset 1, which XML does not allow"),
  BadXML(what: "not an element at all", xml: "vfs-g3",
         error: "domain: document has no root element"),
  // FoundationXML parses in libxml2's recovery mode: a cut document is read
  // as far as it goes, and what is missing is what gets reported.
  BadXML(what: "document cut short (recovered, then found incomplete)", xml: "<domain><name>g</name>",
         error: "domain/uuid: missing or empty"),
  BadXML(what: "another root element", xml: "<network><name>default</name></network>",
         error: "network: root element is <network>, not <domain>"),
  BadXML(what: "no uuid", xml: "<domain><name>g</name></domain>", error: "domain/uuid: missing or empty"),
  BadXML(what: "blank name", xml: "<domain><uuid>u</uuid><name>  </name></domain>", error: "domain/name: missing or empty"),
  BadXML(what: "QoS label without class",
         xml: domain("", metadata: "<q:qos xmlns:q='https://vfshift.dev/ns/qos/1'/>"),
         error: "domain/metadata/qos@class: QoS label without a class attribute"),
  BadXML(what: "data NIC record without an alias",
         xml: domain("", metadata: "<d:data-nic xmlns:d='https://vfshift.dev/ns/data-nic/1'/>"),
         error: "domain/metadata/data-nic@alias: data NIC record without an alias attribute"),
  BadXML(what: "refusal record with no times",
         xml: domain("", metadata: "<r:refused xmlns:r='https://vfshift.dev/ns/refused/1' untilMs='1'/>"),
         error: "domain/metadata/refused@times: missing or not a whole number above 0"),
  BadXML(what: "refusal record with its end not a number",
         xml: domain("", metadata: "<r:refused xmlns:r='https://vfshift.dev/ns/refused/1' times='2' untilMs='later'/>"),
         error: "domain/metadata/refused@untilMs: missing or not a whole number of milliseconds"),
  BadXML(what: "journal with an unknown operation",
         xml: domain("", metadata: "<j:journal \(journalNS) op='swap' pool='p' oldAlias='a' newAlias='b' step='attaching' startedAtMs='1'/>"),
         error: "domain/metadata/journal@op: 'swap' is not one of [\"promote\", \"demote\"]"),
  BadXML(what: "journal time not a number",
         xml: domain("", metadata: "<j:journal \(journalNS) op='promote' pool='p' oldAlias='a' newAlias='b' step='attaching' startedAtMs='soon'/>"),
         error: "domain/metadata/journal@startedAtMs: 'soon' is not a whole number of milliseconds"),
  BadXML(what: "interface without type", xml: domain("<interface>\(mac)</interface>"),
         error: "domain/devices/interface[1]@type: interface without a type"),
  BadXML(what: "interface without MAC", xml: domain("<interface type='bridge'><source bridge='br0'/></interface>"),
         error: "domain/devices/interface[1]/mac@address: interface without a MAC address"),
  BadXML(what: "bridge NIC without its bridge",
         xml: domain("<interface type='network'>\(mac)<source network='n'/></interface><interface type='bridge'>\(mac)</interface>"),
         error: "domain/devices/interface[2]/source@bridge: bridge interface without a bridge"),
  BadXML(what: "hostdev NIC without a PCI address", xml: domain("<interface type='hostdev'>\(mac)<source/></interface>"),
         error: "domain/devices/interface[1]/source/address: hostdev interface without a PCI address"),
  BadXML(what: "PCI slot not hexadecimal",
         xml: domain("<interface type='hostdev'>\(mac)<source><address type='pci' domain='0x0000' bus='0x3b' slot='0xzz' function='0x5'/></source></interface>"),
         error: "domain/devices/interface[1]/source/address@slot: '0xzz' is not a hexadecimal number"),
  BadXML(what: "transient teaming without its partner",
         xml: domain("<interface type='bridge'>\(mac)<source bridge='b'/><teaming type='transient'/></interface>"),
         error: "domain/devices/interface[1]/teaming@persistent: transient teaming without the persistent NIC's alias"),
  BadXML(what: "unknown teaming type",
         xml: domain("<interface type='bridge'>\(mac)<source bridge='b'/><teaming type='bond'/></interface>"),
         error: "domain/devices/interface[1]/teaming@type: unknown teaming type 'bond'"),
  // FoundationXML substitutes entities, external ones included: before the
  // DTD was refused, this read the host's /etc/hostname into the name.
  BadXML(what: "external entity reading a host file",
         xml: "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/hostname'>]><domain><uuid>u</uuid><name>&x;</name></domain>",
         error: "domain: a DTD (<!DOCTYPE>) is refused: libvirt never writes one, and its entities can read host files"),
]

func domainXMLError(_ xml: String) -> String {
  do { _ = try parseDomainXML(xml); return "accepted" } catch { return error.description }
}

@Test(arguments: badDomainXML)
func badDomainXMLGetsItsExactError(_ row: BadXML) {
  #expect(domainXMLError(row.xml) == row.error, "\(row.what)")
}

@Test("an empty or NUL-holding document is an error from the interface and journal readers too, not a SEGV")
func emptyAndNULAreErrorsEverywhere() {
  for xml in ["", "\0", "<\0\0\0\0interface type='bridge'/>"] {
    #expect(throws: DomainXMLError.self) { try parseInterfaceXML(xml) }
    #expect(throws: DomainXMLError.self) { try SwapJournal(xml: xml) }
  }
}

@Test("the domain XML bad-input table")
func domainXMLBadInputTable() {
  guard let dir = ProcessInfo.processInfo.environment["VFSHIFT_BAD_INPUT_TABLE"] else { return }
  var out = "| bad input | XML | error |\n|---|---|---|\n"
  for row in badDomainXML {
    var shown = row.xml.replacingOccurrences(of: "\0", with: "␀").replacingOccurrences(of: "|", with: "\\|")
    if shown.count > 90 { shown = "…" + String(shown.suffix(90)) }
    out += "| \(row.what) | \(shown.isEmpty ? "(empty)" : "`\(shown)`") | `\(domainXMLError(row.xml))` |\n"
  }
  try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  _ = FileManager.default.createFile(atPath: "\(dir)/domainxml.md", contents: Data(out.utf8))
}

@Test("a refusal record reads back as written, inside the namespace libvirt stores it under")
func refusalRecordRoundTrip() throws {
  let record = RefusalRecord(times: 3, untilUnixMilliseconds: 1_780_000_123_456)
  let element = record.xmlElement().replacingOccurrences(of: "<refused ",
                                                         with: "<r:refused xmlns:r='https://vfshift.dev/ns/refused/1' ")
  #expect(try parseDomainXML(domain("", metadata: element)).refusal == record)
  #expect(try parseDomainXML(domain("")).refusal == nil)
  // The same element name in another namespace is not ours.
  #expect(try parseDomainXML(domain("", metadata: "<r:refused xmlns:r='https://example.org/x' times='x'/>")).refusal == nil)
}
