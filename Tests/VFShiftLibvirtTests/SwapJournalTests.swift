import Testing
@testable import VFShiftLibvirt

@Suite struct SwapJournalTests {
  let journal = SwapJournal(operation: .demote, pool: "vfs-pool", oldAlias: "ua-vfshift-net0", newAlias: "ua-net0",
                            step: .attaching, startedAtUnixMilliseconds: 1_718_000_000_000,
                            savedInterfaceXML: Fixture.savedBridgeNIC)

  @Test func roundTripsThroughItsOwnElement() throws {
    #expect(try SwapJournal(xml: journal.xmlElement()) == journal)
    var bare = journal
    bare.savedInterfaceXML = nil
    #expect(try SwapJournal(xml: bare.xmlElement()) == bare)
  }

  @Test func readsTheFormLibvirtReturns() throws {
    // virDomainGetMetadata gives the element back prefixed, with the namespace declared.
    let fromLibvirt = journal.xmlElement()
      .replacingOccurrences(of: "<journal ", with: "<vfshift-journal:journal xmlns:vfshift-journal=\"https://vfshift.dev/ns/journal/1\" ")
      .replacingOccurrences(of: "<saved>", with: "<vfshift-journal:saved>")
      .replacingOccurrences(of: "</saved></journal>", with: "</vfshift-journal:saved></vfshift-journal:journal>")
    #expect(try SwapJournal(xml: fromLibvirt) == journal)
  }

  @Test func escapesWhatWouldBreakTheElement() throws {
    var odd = journal
    odd.pool = "a\"b<c>&'d"
    odd.savedInterfaceXML = "<interface type=\"bridge\"><!-- & --></interface>"
    #expect(try SwapJournal(xml: odd.xmlElement()) == odd)
  }

  @Test func refusesWithTheAttributeNamed() {
    let rows: [(String, String)] = [
      ("<journal op='sideways' pool='p' oldAlias='a' newAlias='b' step='attaching' startedAtMs='1'/>", "journal@op"),
      ("<journal op='promote' oldAlias='a' newAlias='b' step='attaching' startedAtMs='1'/>", "journal@pool"),
      ("<journal op='promote' pool='p' oldAlias='a' newAlias='b' step='attaching' startedAtMs='soon'/>", "journal@startedAtMs"),
      ("<qos class='high'/>", "qos"),
    ]
    for (xml, path) in rows {
      do {
        _ = try SwapJournal(xml: xml)
        Issue.record("accepted \(xml)")
      } catch {
        #expect(error.path == path, "\(xml): \(error)")
      }
    }
  }
}
