// The only file of vfshift that names libvirt's C symbols, holds its pointers
// or runs unsafe code. Everything above it sees Swift values and the small
// handle classes below, whose deinit gives each libvirt object back exactly once.
//
// libvirt is loaded at run time (dlopen), not linked: vfshift builds with the
// Swift toolchain alone, and `whatif`, `policy check` and `trace` run on a box
// without libvirt. The few types and constants used are mirrored here from
// libvirt's public headers (libvirt-domain.h, libvirt-common.h, virterror.h,
// libvirt-qemu.h), whose ABI libvirt keeps stable across releases.

import Foundation
import Glibc
import VFShiftCore

// MARK: - Types and constants mirrored from libvirt's headers

/// The prefix of `struct _virError` (virterror.h) that is read: code, domain, message.
private struct VirErrorPrefix {
  var code: Int32
  var domain: Int32
  var message: UnsafeMutablePointer<CChar>?
}

/// `virDomainInterfaceStatsStruct` (libvirt-domain.h): eight long longs, -1 where not counted.
private struct VirInterfaceStats {
  var rxBytes: Int64 = 0, rxPackets: Int64 = 0, rxErrs: Int64 = 0, rxDrop: Int64 = 0
  var txBytes: Int64 = 0, txPackets: Int64 = 0, txErrs: Int64 = 0, txDrop: Int64 = 0
}

/// libvirt error codes the adapter acts on (virErrorNumber).
enum ErrorCode {
  static let internalError: Int32 = 1     // VIR_ERR_INTERNAL_ERROR
  static let noConnect: Int32 = 5         // VIR_ERR_NO_CONNECT
  static let systemError: Int32 = 38      // VIR_ERR_SYSTEM_ERROR
  static let rpc: Int32 = 39              // VIR_ERR_RPC
  static let noDomain: Int32 = 42         // VIR_ERR_NO_DOMAIN
  static let operationInvalid: Int32 = 55 // VIR_ERR_OPERATION_INVALID
  static let noDomainMetadata: Int32 = 80 // VIR_ERR_NO_DOMAIN_METADATA
  static let deviceMissing: Int32 = 99    // VIR_ERR_DEVICE_MISSING
  /// Not libvirt's: the library itself could not be loaded.
  static let libraryMissing: Int32 = -2
}

private enum Flag {
  static let affectLive: UInt32 = 1            // VIR_DOMAIN_AFFECT_LIVE
  static let listDomainsActive: UInt32 = 1     // VIR_CONNECT_LIST_DOMAINS_ACTIVE
  static let metadataElement: Int32 = 2        // VIR_DOMAIN_METADATA_ELEMENT
}

private enum EventID {
  static let lifecycle: Int32 = 0              // VIR_DOMAIN_EVENT_ID_LIFECYCLE
  static let deviceRemoved: Int32 = 15         // VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED
  static let deviceAdded: Int32 = 19           // VIR_DOMAIN_EVENT_ID_DEVICE_ADDED
  static let deviceRemovalFailed: Int32 = 22   // VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED
  static let metadataChange: Int32 = 23        // VIR_DOMAIN_EVENT_ID_METADATA_CHANGE
}

private typealias Ptr = OpaquePointer
private typealias CStr = UnsafePointer<CChar>?
private typealias FreeCallback = @convention(c) (UnsafeMutableRawPointer?) -> Void
private typealias CloseCallback = @convention(c) (Ptr?, Int32, UnsafeMutableRawPointer?) -> Void
private typealias GenericCallback = @convention(c) (Ptr?, Ptr?, UnsafeMutableRawPointer?) -> Void
private typealias ErrorCallback = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void

// MARK: - The library, bound once

/// Every libvirt function vfshift calls, bound from the loaded library once per process.
private struct Symbols: @unchecked Sendable {
  let getLastError: @convention(c) () -> UnsafeMutableRawPointer?
  let setErrorFunc: @convention(c) (UnsafeMutableRawPointer?, ErrorCallback?) -> Void
  let eventRegisterDefaultImpl: @convention(c) () -> Int32
  let eventRunDefaultImpl: @convention(c) () -> Int32
  let getVersion: @convention(c) (UnsafeMutablePointer<UInt>?, CStr, UnsafeMutablePointer<UInt>?) -> Int32
  let connectOpen: @convention(c) (CStr) -> Ptr?
  let connectClose: @convention(c) (Ptr?) -> Int32
  let connectIsAlive: @convention(c) (Ptr?) -> Int32
  let connectSetKeepAlive: @convention(c) (Ptr?, Int32, UInt32) -> Int32
  let connectDomainEventRegisterAny: @convention(c) (Ptr?, Ptr?, Int32, GenericCallback?, UnsafeMutableRawPointer?, FreeCallback?) -> Int32
  let connectDomainEventDeregisterAny: @convention(c) (Ptr?, Int32) -> Int32
  let connectRegisterCloseCallback: @convention(c) (Ptr?, CloseCallback?, UnsafeMutableRawPointer?, FreeCallback?) -> Int32
  let connectUnregisterCloseCallback: @convention(c) (Ptr?, CloseCallback?) -> Int32
  let connectListAllDomains: @convention(c) (Ptr?, UnsafeMutablePointer<UnsafeMutablePointer<Ptr?>?>?, UInt32) -> Int32
  let networkLookupByName: @convention(c) (Ptr?, CStr) -> Ptr?
  let networkGetXMLDesc: @convention(c) (Ptr?, UInt32) -> UnsafeMutablePointer<CChar>?
  let networkFree: @convention(c) (Ptr?) -> Int32
  let domainLookupByUUIDString: @convention(c) (Ptr?, CStr) -> Ptr?
  let domainFree: @convention(c) (Ptr?) -> Int32
  let domainGetName: @convention(c) (Ptr?) -> CStr
  let domainGetUUIDString: @convention(c) (Ptr?, UnsafeMutablePointer<CChar>?) -> Int32
  let domainIsActive: @convention(c) (Ptr?) -> Int32
  let domainIsPersistent: @convention(c) (Ptr?) -> Int32
  let domainGetXMLDesc: @convention(c) (Ptr?, UInt32) -> UnsafeMutablePointer<CChar>?
  let domainAttachDeviceFlags: @convention(c) (Ptr?, CStr, UInt32) -> Int32
  let domainDetachDeviceAlias: @convention(c) (Ptr?, CStr, UInt32) -> Int32
  let domainSetMetadata: @convention(c) (Ptr?, Int32, CStr, CStr, CStr, UInt32) -> Int32
  let domainGetMetadata: @convention(c) (Ptr?, Int32, CStr, UInt32) -> UnsafeMutablePointer<CChar>?
  let domainInterfaceStats: @convention(c) (Ptr?, CStr, UnsafeMutableRawPointer?, Int) -> Int32
  /// From libvirt-qemu.so.0; nil where that library is absent (the guest agent is then unreachable).
  let domainQemuAgentCommand: (@convention(c) (Ptr?, CStr, Int32, UInt32) -> UnsafeMutablePointer<CChar>?)?

  static let soname = "libvirt.so.0"
  static let qemuSoname = "libvirt-qemu.so.0"

  static func load() throws(LibvirtError) -> Symbols {
    guard let lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL) else {
      throw LibvirtError(function: "dlopen", domain: nil, code: ErrorCode.libraryMissing,
                         message: "libvirt is not installed: \(soname) could not be loaded (\(dlerrorText())); "
                           + "install the Debian package libvirt0")
    }
    func bind<F>(_ name: String) throws(LibvirtError) -> F {
      guard let p = dlsym(lib, name) else {
        throw LibvirtError(function: "dlsym", domain: nil, code: ErrorCode.libraryMissing,
                           message: "\(soname) has no \(name): libvirt too old for vfshift (Debian 12's libvirt0 9.0 or newer)")
      }
      return unsafeBitCast(p, to: F.self)
    }
    let qemu = dlopen(qemuSoname, RTLD_NOW | RTLD_LOCAL)
    let symbols = Symbols(
      getLastError: try bind("virGetLastError"), setErrorFunc: try bind("virSetErrorFunc"),
      eventRegisterDefaultImpl: try bind("virEventRegisterDefaultImpl"), eventRunDefaultImpl: try bind("virEventRunDefaultImpl"),
      getVersion: try bind("virGetVersion"),
      connectOpen: try bind("virConnectOpen"), connectClose: try bind("virConnectClose"),
      connectIsAlive: try bind("virConnectIsAlive"), connectSetKeepAlive: try bind("virConnectSetKeepAlive"),
      connectDomainEventRegisterAny: try bind("virConnectDomainEventRegisterAny"),
      connectDomainEventDeregisterAny: try bind("virConnectDomainEventDeregisterAny"),
      connectRegisterCloseCallback: try bind("virConnectRegisterCloseCallback"),
      connectUnregisterCloseCallback: try bind("virConnectUnregisterCloseCallback"),
      connectListAllDomains: try bind("virConnectListAllDomains"),
      networkLookupByName: try bind("virNetworkLookupByName"), networkGetXMLDesc: try bind("virNetworkGetXMLDesc"),
      networkFree: try bind("virNetworkFree"),
      domainLookupByUUIDString: try bind("virDomainLookupByUUIDString"), domainFree: try bind("virDomainFree"),
      domainGetName: try bind("virDomainGetName"), domainGetUUIDString: try bind("virDomainGetUUIDString"),
      domainIsActive: try bind("virDomainIsActive"), domainIsPersistent: try bind("virDomainIsPersistent"),
      domainGetXMLDesc: try bind("virDomainGetXMLDesc"), domainAttachDeviceFlags: try bind("virDomainAttachDeviceFlags"),
      domainDetachDeviceAlias: try bind("virDomainDetachDeviceAlias"), domainSetMetadata: try bind("virDomainSetMetadata"),
      domainGetMetadata: try bind("virDomainGetMetadata"), domainInterfaceStats: try bind("virDomainInterfaceStats"),
      domainQemuAgentCommand: qemu.flatMap { dlsym($0, "virDomainQemuAgentCommand") }
        .map { unsafeBitCast($0, to: (@convention(c) (Ptr?, CStr, Int32, UInt32) -> UnsafeMutablePointer<CChar>?).self) })
    return symbols
  }

  private static func dlerrorText() -> String {
    dlerror().map { String(cString: $0) } ?? "no reason given"
  }
}

/// Loaded on first use: the commands that never talk to libvirt never load it.
private let loaded: Result<Symbols, LibvirtError> = Result { () throws(LibvirtError) in try Symbols.load() }

/// The bound functions. Only reached through a connection, which exists only
/// once loading succeeded (`EventLoop.started` checks it first).
private var lv: Symbols {
  switch loaded {
  case .success(let s): s
  case .failure(let e): preconditionFailure("libvirt called before it was loaded: \(e)")
  }
}

/// libvirt's version (major * 1,000,000 + minor * 1,000 + release), or why it cannot be had.
func libvirtLibraryVersion() -> Result<UInt, LibvirtError> {
  loaded.map { s in
    var v: UInt = 0
    return s.getVersion(&v, nil, nil) == 0 ? v : 0
  }
}

/// libvirt keeps the last error per thread, so this must run on the thread
/// that made the failing call, before any other libvirt call.
private func lastError(_ function: StaticString, domain: String?) -> LibvirtError {
  guard let raw = lv.getLastError() else {
    return LibvirtError(function: "\(function)", domain: domain, code: -1,
                        message: "libvirt reported a failure without an error record")
  }
  let e = raw.assumingMemoryBound(to: VirErrorPrefix.self).pointee
  return LibvirtError(function: "\(function)", domain: domain, code: e.code,
                      message: e.message.map { String(cString: $0) } ?? "no message")
}

private func check(_ rc: Int32, _ function: StaticString, domain: String?) throws(LibvirtError) {
  if rc < 0 { throw lastError(function, domain: domain) }
}

/// Takes ownership of a malloc'ed C string from libvirt.
private func takeString(_ p: UnsafeMutablePointer<CChar>?) -> String? {
  guard let p else { return nil }
  defer { free(p) }
  return String(cString: p)
}

// MARK: - Event loop (one per process)

enum EventLoop {
  /// libvirt's default event loop must be registered before the first
  /// connection opens and then driven forever on a thread of its own: it
  /// carries keepalive and every event callback. A process gets one.
  static let started: Result<Void, LibvirtError> = {
    if case .failure(let e) = loaded { return .failure(e) }
    // libvirt's default handler prints every error to stderr, including the
    // expected ones (absent metadata); errors reach callers as LibvirtError.
    lv.setErrorFunc(nil) { _, _ in }
    if lv.eventRegisterDefaultImpl() < 0 {
      return .failure(lastError("virEventRegisterDefaultImpl", domain: nil))
    }
    let thread = Thread {
      while true {
        if lv.eventRunDefaultImpl() < 0 {
          // Only happens if the loop itself broke; don't spin on it.
          usleep(100_000)
        }
      }
    }
    thread.name = "libvirt-event-loop"
    thread.start()
    return .success(())
  }()
}

// MARK: - Events from C

/// What the C callbacks hand to Swift. Owned by libvirt through the opaque
/// pointer (retained on register, released by libvirt's free callback).
final class EventSink: @unchecked Sendable {
  let deliver: @Sendable (DomainEvent) -> Void
  let closed: @Sendable (_ reason: String) -> Void
  init(deliver: @escaping @Sendable (DomainEvent) -> Void, closed: @escaping @Sendable (String) -> Void) {
    self.deliver = deliver
    self.closed = closed
  }
}

private func sink(_ opaque: UnsafeMutableRawPointer?) -> EventSink? {
  opaque.map { Unmanaged<EventSink>.fromOpaque($0).takeUnretainedValue() }
}

/// The virDomainPtr of a callback lives only during the callback: copy the UUID out.
private func uuidOf(_ dom: OpaquePointer?) -> String {
  guard let dom else { return "" }
  return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buf in
    guard let base = buf.baseAddress, lv.domainGetUUIDString(dom, base) == 0 else { return "" }
    return String(cString: base)
  }
}

private let releaseSink: FreeCallback = { opaque in
  if let opaque { Unmanaged<EventSink>.fromOpaque(opaque).release() }
}

private typealias DeviceCallback = @convention(c) (
  OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void
private typealias LifecycleCallback = @convention(c) (
  OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?) -> Void
private typealias MetadataCallback = @convention(c) (
  OpaquePointer?, OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void

private let onDeviceAdded: DeviceCallback = { _, dom, alias, opaque in
  sink(opaque)?.deliver(.deviceAdded(uuid: uuidOf(dom), alias: alias.map { String(cString: $0) } ?? ""))
}
private let onDeviceRemoved: DeviceCallback = { _, dom, alias, opaque in
  sink(opaque)?.deliver(.deviceRemoved(uuid: uuidOf(dom), alias: alias.map { String(cString: $0) } ?? ""))
}
private let onDeviceRemovalFailed: DeviceCallback = { _, dom, alias, opaque in
  sink(opaque)?.deliver(.deviceRemovalFailed(uuid: uuidOf(dom), alias: alias.map { String(cString: $0) } ?? ""))
}
private let onLifecycle: LifecycleCallback = { _, dom, event, _, opaque in
  sink(opaque)?.deliver(.lifecycle(uuid: uuidOf(dom), lifecycleKind(event)))
}
private let onMetadataChange: MetadataCallback = { _, dom, _, nsuri, opaque in
  sink(opaque)?.deliver(.metadataChanged(uuid: uuidOf(dom), namespaceURI: nsuri.map { String(cString: $0) }))
}
private let onClose: CloseCallback = { _, reason, opaque in
  let text: String
  switch reason {  // virConnectCloseReason (libvirt-common.h)
  case 0: text = "error on the socket"
  case 1: text = "end of file (libvirtd went away)"
  case 2: text = "keepalive timeout"
  case 3: text = "closed by the client"
  default: text = "reason \(reason)"
  }
  sink(opaque)?.closed(text)
}

private func lifecycleKind(_ event: Int32) -> LifecycleKind {
  switch event {  // virDomainEventType (libvirt-domain.h)
  case 0: .defined
  case 1: .undefined
  case 2: .started
  case 3: .suspended
  case 4: .resumed
  case 5: .stopped
  case 6: .shutdown
  case 7: .pmSuspended
  case 8: .crashed
  default: .other(event)
  }
}

// MARK: - Connection handle

/// One open virConnectPtr with its registered callbacks. Closed in deinit.
final class ConnectionHandle: @unchecked Sendable {
  private let raw: OpaquePointer
  let uri: String
  private var callbackIDs: [Int32] = []
  private var closeSink: UnsafeMutableRawPointer?

  init(uri: String) throws(LibvirtError) {
    if case .failure(let e) = EventLoop.started { throw e }
    guard let raw = lv.connectOpen(uri) else { throw lastError("virConnectOpen", domain: nil) }
    self.raw = raw
    self.uri = uri
  }

  deinit {
    if closeSink != nil { _ = lv.connectUnregisterCloseCallback(raw, onClose) }
    for id in callbackIDs { _ = lv.connectDomainEventDeregisterAny(raw, id) }
    _ = lv.connectClose(raw)
  }

  /// Keepalive needs the event loop running; it turns a silently dead daemon
  /// into a close callback within interval * count seconds.
  func setKeepAlive(intervalSeconds: Int32, count: UInt32) throws(LibvirtError) {
    try check(lv.connectSetKeepAlive(raw, intervalSeconds, count), "virConnectSetKeepAlive", domain: nil)
  }

  /// Registers the device, lifecycle, metadata and close callbacks, all for every domain.
  func register(_ s: EventSink) throws(LibvirtError) {
    // Each callback has its own C type; libvirt takes them all as the generic one (VIR_DOMAIN_EVENT_CALLBACK).
    let callbacks: [(Int32, GenericCallback)] = [
      (EventID.deviceAdded, unsafeBitCast(onDeviceAdded, to: GenericCallback.self)),
      (EventID.deviceRemoved, unsafeBitCast(onDeviceRemoved, to: GenericCallback.self)),
      (EventID.deviceRemovalFailed, unsafeBitCast(onDeviceRemovalFailed, to: GenericCallback.self)),
      (EventID.lifecycle, unsafeBitCast(onLifecycle, to: GenericCallback.self)),
      (EventID.metadataChange, unsafeBitCast(onMetadataChange, to: GenericCallback.self)),
    ]
    for (eventID, cb) in callbacks {
      let opaque = Unmanaged.passRetained(s).toOpaque()
      let id = lv.connectDomainEventRegisterAny(raw, nil, eventID, cb, opaque, releaseSink)
      if id < 0 {
        Unmanaged<EventSink>.fromOpaque(opaque).release()
        throw lastError("virConnectDomainEventRegisterAny", domain: nil)
      }
      callbackIDs.append(id)
    }
    let opaque = Unmanaged.passRetained(s).toOpaque()
    if lv.connectRegisterCloseCallback(raw, onClose, opaque, releaseSink) < 0 {
      Unmanaged<EventSink>.fromOpaque(opaque).release()
      throw lastError("virConnectRegisterCloseCallback", domain: nil)
    }
    closeSink = opaque
  }

  var isAlive: Bool { lv.connectIsAlive(raw) == 1 }

  /// (uuid, name) of every active (running or paused) domain.
  func activeDomains() throws(LibvirtError) -> [(uuid: String, name: String)] {
    var list: UnsafeMutablePointer<OpaquePointer?>? = nil
    let n = lv.connectListAllDomains(raw, &list, Flag.listDomainsActive)
    try check(n, "virConnectListAllDomains", domain: nil)
    guard let list else { return [] }
    defer { free(list) }
    var out: [(uuid: String, name: String)] = []
    for i in 0..<Int(n) {
      guard let dom = list[i] else { continue }
      let name = lv.domainGetName(dom).map { String(cString: $0) } ?? ""
      out.append((uuidOf(dom), name))
      _ = lv.domainFree(dom)
    }
    return out
  }

  /// A libvirt network's XML (virNetworkLookupByName + virNetworkGetXMLDesc).
  func networkXML(name: String) throws(LibvirtError) -> String {
    guard let net = lv.networkLookupByName(raw, name) else { throw lastError("virNetworkLookupByName", domain: nil) }
    defer { _ = lv.networkFree(net) }
    guard let s = takeString(lv.networkGetXMLDesc(net, 0)) else { throw lastError("virNetworkGetXMLDesc", domain: nil) }
    return s
  }

  func domain(uuid: String) throws(LibvirtError) -> DomainHandle {
    guard let dom = lv.domainLookupByUUIDString(raw, uuid) else {
      throw lastError("virDomainLookupByUUIDString", domain: uuid)
    }
    return DomainHandle(raw: dom)
  }
}

// MARK: - Domain handle

/// One virDomainPtr; freed in deinit. Errors name the domain by its name.
final class DomainHandle {
  private let raw: OpaquePointer
  let name: String

  fileprivate init(raw: OpaquePointer) {
    self.raw = raw
    self.name = lv.domainGetName(raw).map { String(cString: $0) } ?? "?"
  }

  deinit { _ = lv.domainFree(raw) }

  var uuid: String { uuidOf(raw) }

  func isActive() throws(LibvirtError) -> Bool {
    let rc = lv.domainIsActive(raw)
    try check(rc, "virDomainIsActive", domain: name)
    return rc == 1
  }

  func isPersistent() throws(LibvirtError) -> Bool {
    let rc = lv.domainIsPersistent(raw)
    try check(rc, "virDomainIsPersistent", domain: name)
    return rc == 1
  }

  /// The live XML (flags 0: what the running domain has now).
  func xml() throws(LibvirtError) -> String {
    guard let s = takeString(lv.domainGetXMLDesc(raw, 0)) else {
      throw lastError("virDomainGetXMLDesc", domain: name)
    }
    return s
  }

  func attachLive(_ xml: String) throws(LibvirtError) {
    try check(lv.domainAttachDeviceFlags(raw, xml, Flag.affectLive),
              "virDomainAttachDeviceFlags", domain: name)
  }

  /// Returns as soon as QEMU has asked the guest to let go, not when it has.
  func detachLive(alias: String) throws(LibvirtError) {
    try check(lv.domainDetachDeviceAlias(raw, alias, Flag.affectLive),
              "virDomainDetachDeviceAlias", domain: name)
  }

  /// Sets (or, with nil, removes) the metadata element of `uri` in the live definition.
  func setMetadata(_ xml: String?, prefix: String, uri: String) throws(LibvirtError) {
    try check(lv.domainSetMetadata(raw, Flag.metadataElement, xml, xml == nil ? nil : prefix, uri, Flag.affectLive),
              "virDomainSetMetadata", domain: name)
  }

  /// The metadata element of `uri` in the live definition, nil when there is none.
  func metadata(uri: String) throws(LibvirtError) -> String? {
    if let s = takeString(lv.domainGetMetadata(raw, Flag.metadataElement, uri, Flag.affectLive)) {
      return s
    }
    let e = lastError("virDomainGetMetadata", domain: name)
    if e.code == ErrorCode.noDomainMetadata { return nil }
    throw e
  }

  /// libvirt's counters for one NIC, from the guest's side (libvirt swaps a
  /// tap's rx/tx and leaves a macvtap's as they are, which already match).
  func interfaceStats(device: String) throws(LibvirtError) -> VMCounters {
    var s = VirInterfaceStats()
    try check(withUnsafeMutableBytes(of: &s) { lv.domainInterfaceStats(raw, device, $0.baseAddress, $0.count) },
              "virDomainInterfaceStats", domain: name)
    // -1 means "this driver does not count it".
    func value(_ v: Int64) -> UInt64? { v < 0 ? nil : UInt64(v) }
    return VMCounters(rxBytes: value(s.rxBytes) ?? 0, txBytes: value(s.txBytes) ?? 0,
                      rxPackets: value(s.rxPackets), txPackets: value(s.txPackets))
  }

  /// One command to the QEMU guest agent (libvirt-qemu), its reply JSON. The
  /// timeout (seconds) bounds how long libvirt waits for the guest's answer.
  func qemuAgentCommand(_ json: String, timeoutSeconds: Int32) throws(LibvirtError) -> String {
    guard let call = lv.domainQemuAgentCommand else {
      throw LibvirtError(function: "virDomainQemuAgentCommand", domain: name, code: ErrorCode.libraryMissing,
                         message: "\(Symbols.qemuSoname) could not be loaded; install the Debian package libvirt0")
    }
    guard let s = takeString(call(raw, json, timeoutSeconds, 0)) else {
      throw lastError("virDomainQemuAgentCommand", domain: name)
    }
    return s
  }
}
