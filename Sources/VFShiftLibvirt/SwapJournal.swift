import VFShiftCore
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The intent of a swap, written into the domain's own `<metadata>` before the
/// first device changes and cleared after the last, so that an agent that
/// dies half-way (or its successor on another start) can finish or roll back.
///
/// In the domain XML (libvirt adds the prefix and the namespace declaration):
///
///     <vfshift-journal:journal xmlns:vfshift-journal="https://vfshift.dev/ns/journal/1"
///         op="promote" pool="vfs-pool" oldAlias="ua-net0" newAlias="ua-vfshift-net0"
///         step="attached" startedAtMs="1718000000000">
///       <vfshift-journal:saved>&lt;interface type='bridge'&gt;…&lt;/interface&gt;</vfshift-journal:saved>
///     </vfshift-journal:journal>
///
/// The saved NIC is escaped text, not nested elements: libvirt moves every
/// element inside metadata into the journal's namespace, which would turn a
/// nested `<interface>` into something libvirt no longer accepts as a device.
public struct SwapJournal: Sendable, Equatable, Hashable {
  public typealias Operation = Verb

  /// How far the swap got. Each step is written before the action it names
  /// is taken, so on recovery the step says what may or may not have happened.
  public enum Step: String, Sendable, Equatable, Hashable, CaseIterable {
    /// Nothing changed yet; the new NIC may be about to be attached.
    case attaching
    /// The new NIC is in the live XML; the old one may be about to be detached.
    case detaching
    /// The old NIC's detach did not complete (guest did not let go); retry later.
    case detachPending
  }

  public var operation: Operation
  /// The pool network the VF comes from (promote) or goes back to (demote).
  public var pool: String
  /// Alias of the NIC being replaced.
  public var oldAlias: String
  /// Alias of the NIC being added.
  public var newAlias: String
  public var step: Step
  /// When the swap began, milliseconds since the Unix epoch (wall clock: it
  /// must mean the same to a later process).
  public var startedAtUnixMilliseconds: Int64
  /// The `<interface>` XML of the NIC being replaced, to restore it from.
  public var savedInterfaceXML: String?
  /// A failover-mode swap (`mode="failover"`): the virtio NIC stays, only
  /// the VF comes and goes, so finishing a promotion must not detach the virtio.
  public var failover: Bool

  public init(operation: Operation, pool: String, oldAlias: String, newAlias: String, step: Step,
              startedAtUnixMilliseconds: Int64, savedInterfaceXML: String?, failover: Bool = false) {
    self.operation = operation; self.pool = pool; self.oldAlias = oldAlias; self.newAlias = newAlias
    self.step = step; self.startedAtUnixMilliseconds = startedAtUnixMilliseconds
    self.savedInterfaceXML = savedInterfaceXML; self.failover = failover
  }

  /// The element to hand to virDomainSetMetadata (unprefixed; libvirt adds
  /// the namespace). Attribute values and the saved XML are escaped.
  public func xmlElement() -> String {
    var s = "<journal op=\"\(operation.rawValue)\" pool=\"\(xmlEscape(pool))\" oldAlias=\"\(xmlEscape(oldAlias))\""
    s += " newAlias=\"\(xmlEscape(newAlias))\" step=\"\(step.rawValue)\" startedAtMs=\"\(startedAtUnixMilliseconds)\""
    if failover { s += " mode=\"failover\"" }
    if let saved = savedInterfaceXML {
      s += "><saved>\(xmlEscape(saved))</saved></journal>"
    } else {
      s += "/>"
    }
    return s
  }

  /// Reads the element as `xmlElement()` writes it, or as libvirt returns it
  /// (prefixed, with the namespace declared). Pure.
  public init(xml: String) throws(DomainXMLError) {
    let root = try parseRoot(xml, path: "journal")
    try self.init(element: root)
  }

  init(element e: XMLTreeElement) throws(DomainXMLError) {
    guard e.localName == "journal" else {
      throw DomainXMLError(path: e.name, problem: "expected a <journal> element")
    }
    func required(_ name: String) throws(DomainXMLError) -> String {
      guard let v = e.attribute(forName: name), !v.isEmpty else {
        throw DomainXMLError(path: "journal@\(name)", problem: "missing")
      }
      return v
    }
    let op = try required("op")
    guard let operation = Operation(rawValue: op) else {
      throw DomainXMLError(path: "journal@op", problem: "'\(op)' is not one of \(Operation.allCases.map(\.rawValue))")
    }
    let stepText = try required("step")
    guard let step = Step(rawValue: stepText) else {
      throw DomainXMLError(path: "journal@step", problem: "'\(stepText)' is not one of \(Step.allCases.map(\.rawValue))")
    }
    let started = try required("startedAtMs")
    guard let startedAt = Int64(started) else {
      throw DomainXMLError(path: "journal@startedAtMs", problem: "'\(started)' is not a whole number of milliseconds")
    }
    let saved = e.childElements.first { $0.localName == "saved" }
    let mode = e.attribute(forName: "mode") ?? "replace"
    guard mode == "replace" || mode == "failover" else {
      throw DomainXMLError(path: "journal@mode", problem: "'\(mode)' is not one of replace, failover")
    }
    self.init(operation: operation, pool: try required("pool"), oldAlias: try required("oldAlias"),
              newAlias: try required("newAlias"), step: step, startedAtUnixMilliseconds: startedAt,
              savedInterfaceXML: saved?.stringValue, failover: mode == "failover")
  }
}

/// The virtio NIC a promoted VM gave up, kept in the domain's own metadata so
/// that demoting restores it exactly — whichever agent process does it. Read
/// and written by the same codec as the journal.
///
///     <vfshift-parked:parked xmlns:vfshift-parked="https://vfshift.dev/ns/parked/1"
///         pool="vfs-pool" sinceMs="1718000000000">&lt;interface …&gt;</vfshift-parked:parked>
public struct ParkedNIC: Sendable, Equatable {
  public static let namespace = "https://vfshift.dev/ns/parked/1"
  public static let prefix = "vfshift-parked"
  public var pool: String
  public var sinceUnixMilliseconds: Int64
  public var savedInterfaceXML: String

  public init(pool: String, sinceUnixMilliseconds: Int64, savedInterfaceXML: String) {
    self.pool = pool; self.sinceUnixMilliseconds = sinceUnixMilliseconds; self.savedInterfaceXML = savedInterfaceXML
  }

  /// Escaped text, not nested elements: libvirt would move a nested
  /// `<interface>` into this namespace.
  public func xmlElement() -> String {
    "<parked pool=\"\(xmlEscape(pool))\" sinceMs=\"\(sinceUnixMilliseconds)\">\(xmlEscape(savedInterfaceXML))</parked>"
  }

  public init(xml: String) throws(DomainXMLError) {
    let e = try parseRoot(xml, path: "parked")
    guard e.localName == "parked" else { throw DomainXMLError(path: e.name, problem: "expected a <parked> element") }
    guard let pool = e.attribute(forName: "pool"), !pool.isEmpty else {
      throw DomainXMLError(path: "parked@pool", problem: "missing")
    }
    guard let since = e.attribute(forName: "sinceMs").flatMap({ Int64($0) }) else {
      throw DomainXMLError(path: "parked@sinceMs", problem: "missing or not a whole number of milliseconds")
    }
    let saved = e.stringValue
    guard !saved.isEmpty else { throw DomainXMLError(path: "parked", problem: "holds no saved <interface>") }
    self.init(pool: pool, sinceUnixMilliseconds: since, savedInterfaceXML: saved)
  }
}

/// How often in a row the guest did not use the NIC a swap gave it, and
/// until when vfshift leaves the VM alone for it (the engine's
/// `GuestRefusal`), in the domain's metadata: a restarted agent holds the VM
/// as the one before it did, instead of trying again at once and holding
/// the loop up to the confirmation deadline for a guest that will refuse.
///
///     <vfshift-refused:refused xmlns:vfshift-refused="https://vfshift.dev/ns/refused/1"
///         times="2" untilMs="1718000060000"/>
public struct RefusalRecord: Sendable, Equatable, Hashable {
  public var times: Int
  public var untilUnixMilliseconds: Int64

  public init(times: Int, untilUnixMilliseconds: Int64) {
    self.times = times; self.untilUnixMilliseconds = untilUnixMilliseconds
  }

  public func xmlElement() -> String { "<refused times=\"\(times)\" untilMs=\"\(untilUnixMilliseconds)\"/>" }

  init(element e: XMLTreeElement) throws(DomainXMLError) {
    guard let times = e.attribute(forName: "times").flatMap({ Int($0) }), times > 0 else {
      throw DomainXMLError(path: "refused@times", problem: "missing or not a whole number above 0")
    }
    guard let until = e.attribute(forName: "untilMs").flatMap({ Int64($0) }) else {
      throw DomainXMLError(path: "refused@untilMs", problem: "missing or not a whole number of milliseconds")
    }
    self.init(times: times, untilUnixMilliseconds: until)
  }
}
