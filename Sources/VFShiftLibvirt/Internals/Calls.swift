// The only file of vfshift that names libvirt's C symbols, holds its pointers
// or runs unsafe code. Everything above it sees Swift values and the small
// handle classes below, whose deinit gives each libvirt object back exactly once.

import CLibvirt
import Foundation
import Glibc
import VFShiftCore

// MARK: - Errors

/// libvirt error codes the adapter acts on (virErrorNumber).
enum ErrorCode {
  static let noDomain = Int32(VIR_ERR_NO_DOMAIN.rawValue)
  static let noDomainMetadata = Int32(VIR_ERR_NO_DOMAIN_METADATA.rawValue)
  static let deviceMissing = Int32(VIR_ERR_DEVICE_MISSING.rawValue)
  static let operationInvalid = Int32(VIR_ERR_OPERATION_INVALID.rawValue)
  static let noConnect = Int32(VIR_ERR_NO_CONNECT.rawValue)
  static let systemError = Int32(VIR_ERR_SYSTEM_ERROR.rawValue)
  static let rpc = Int32(VIR_ERR_RPC.rawValue)
  static let internalError = Int32(VIR_ERR_INTERNAL_ERROR.rawValue)
}

/// libvirt keeps the last error per thread, so this must run on the thread
/// that made the failing call, before any other libvirt call.
private func lastError(_ function: StaticString, domain: String?) -> LibvirtError {
  guard let e = virGetLastError() else {
    return LibvirtError(function: "\(function)", domain: domain, code: -1,
                        message: "libvirt reported a failure without an error record")
  }
  return LibvirtError(function: "\(function)", domain: domain, code: e.pointee.code,
                      message: e.pointee.message.map { String(cString: $0) } ?? "no message")
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
    // libvirt's default handler prints every error to stderr, including the
    // expected ones (absent metadata); errors reach callers as LibvirtError.
    virSetErrorFunc(nil) { _, _ in }
    if virEventRegisterDefaultImpl() < 0 {
      return .failure(lastError("virEventRegisterDefaultImpl", domain: nil))
    }
    let thread = Thread {
      while true {
        if virEventRunDefaultImpl() < 0 {
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
    guard let base = buf.baseAddress, virDomainGetUUIDString(dom, base) == 0 else { return "" }
    return String(cString: base)
  }
}

private let releaseSink: virFreeCallback = { opaque in
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
private let onClose: virConnectCloseFunc = { _, reason, opaque in
  let text: String
  switch UInt32(bitPattern: reason) {
  case VIR_CONNECT_CLOSE_REASON_ERROR.rawValue: text = "error on the socket"
  case VIR_CONNECT_CLOSE_REASON_EOF.rawValue: text = "end of file (libvirtd went away)"
  case VIR_CONNECT_CLOSE_REASON_KEEPALIVE.rawValue: text = "keepalive timeout"
  case VIR_CONNECT_CLOSE_REASON_CLIENT.rawValue: text = "closed by the client"
  default: text = "reason \(reason)"
  }
  sink(opaque)?.closed(text)
}

private func lifecycleKind(_ event: Int32) -> LifecycleKind {
  switch UInt32(bitPattern: event) {
  case VIR_DOMAIN_EVENT_DEFINED.rawValue: .defined
  case VIR_DOMAIN_EVENT_UNDEFINED.rawValue: .undefined
  case VIR_DOMAIN_EVENT_STARTED.rawValue: .started
  case VIR_DOMAIN_EVENT_SUSPENDED.rawValue: .suspended
  case VIR_DOMAIN_EVENT_RESUMED.rawValue: .resumed
  case VIR_DOMAIN_EVENT_STOPPED.rawValue: .stopped
  case VIR_DOMAIN_EVENT_SHUTDOWN.rawValue: .shutdown
  case VIR_DOMAIN_EVENT_PMSUSPENDED.rawValue: .pmSuspended
  case VIR_DOMAIN_EVENT_CRASHED.rawValue: .crashed
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
    guard let raw = virConnectOpen(uri) else { throw lastError("virConnectOpen", domain: nil) }
    self.raw = raw
    self.uri = uri
  }

  deinit {
    if closeSink != nil { _ = virConnectUnregisterCloseCallback(raw, onClose) }
    for id in callbackIDs { _ = virConnectDomainEventDeregisterAny(raw, id) }
    virConnectClose(raw)
  }

  /// Keepalive needs the event loop running; it turns a silently dead daemon
  /// into a close callback within interval * count seconds.
  func setKeepAlive(intervalSeconds: Int32, count: UInt32) throws(LibvirtError) {
    try check(virConnectSetKeepAlive(raw, intervalSeconds, count), "virConnectSetKeepAlive", domain: nil)
  }

  /// Registers the device, lifecycle, metadata and close callbacks, all for every domain.
  func register(_ s: EventSink) throws(LibvirtError) {
    let callbacks: [(Int32, virConnectDomainEventGenericCallback)] = [
      (Int32(VIR_DOMAIN_EVENT_ID_DEVICE_ADDED.rawValue), unsafeBitCast(onDeviceAdded, to: virConnectDomainEventGenericCallback.self)),
      (Int32(VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED.rawValue), unsafeBitCast(onDeviceRemoved, to: virConnectDomainEventGenericCallback.self)),
      (Int32(VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED.rawValue), unsafeBitCast(onDeviceRemovalFailed, to: virConnectDomainEventGenericCallback.self)),
      (Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue), unsafeBitCast(onLifecycle, to: virConnectDomainEventGenericCallback.self)),
      (Int32(VIR_DOMAIN_EVENT_ID_METADATA_CHANGE.rawValue), unsafeBitCast(onMetadataChange, to: virConnectDomainEventGenericCallback.self)),
    ]
    for (eventID, cb) in callbacks {
      let opaque = Unmanaged.passRetained(s).toOpaque()
      let id = virConnectDomainEventRegisterAny(raw, nil, eventID, cb, opaque, releaseSink)
      if id < 0 {
        Unmanaged<EventSink>.fromOpaque(opaque).release()
        throw lastError("virConnectDomainEventRegisterAny", domain: nil)
      }
      callbackIDs.append(id)
    }
    let opaque = Unmanaged.passRetained(s).toOpaque()
    if virConnectRegisterCloseCallback(raw, onClose, opaque, releaseSink) < 0 {
      Unmanaged<EventSink>.fromOpaque(opaque).release()
      throw lastError("virConnectRegisterCloseCallback", domain: nil)
    }
    closeSink = opaque
  }

  var isAlive: Bool { virConnectIsAlive(raw) == 1 }

  /// (uuid, name) of every active (running or paused) domain.
  func activeDomains() throws(LibvirtError) -> [(uuid: String, name: String)] {
    var list: UnsafeMutablePointer<OpaquePointer?>? = nil
    let n = virConnectListAllDomains(raw, &list, VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue)
    try check(n, "virConnectListAllDomains", domain: nil)
    guard let list else { return [] }
    defer { free(list) }
    var out: [(uuid: String, name: String)] = []
    for i in 0..<Int(n) {
      guard let dom = list[i] else { continue }
      let name = virDomainGetName(dom).map { String(cString: $0) } ?? ""
      out.append((uuidOf(dom), name))
      virDomainFree(dom)
    }
    return out
  }

  /// A libvirt network's XML (virNetworkLookupByName + virNetworkGetXMLDesc).
  func networkXML(name: String) throws(LibvirtError) -> String {
    guard let net = virNetworkLookupByName(raw, name) else { throw lastError("virNetworkLookupByName", domain: nil) }
    defer { virNetworkFree(net) }
    guard let s = takeString(virNetworkGetXMLDesc(net, 0)) else { throw lastError("virNetworkGetXMLDesc", domain: nil) }
    return s
  }

  func domain(uuid: String) throws(LibvirtError) -> DomainHandle {
    guard let dom = virDomainLookupByUUIDString(raw, uuid) else {
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
    self.name = virDomainGetName(raw).map { String(cString: $0) } ?? "?"
  }

  deinit { virDomainFree(raw) }

  var uuid: String { uuidOf(raw) }

  func isActive() throws(LibvirtError) -> Bool {
    let rc = virDomainIsActive(raw)
    try check(rc, "virDomainIsActive", domain: name)
    return rc == 1
  }

  func isPersistent() throws(LibvirtError) -> Bool {
    let rc = virDomainIsPersistent(raw)
    try check(rc, "virDomainIsPersistent", domain: name)
    return rc == 1
  }

  /// The live XML (flags 0: what the running domain has now).
  func xml() throws(LibvirtError) -> String {
    guard let s = takeString(virDomainGetXMLDesc(raw, 0)) else {
      throw lastError("virDomainGetXMLDesc", domain: name)
    }
    return s
  }

  func attachLive(_ xml: String) throws(LibvirtError) {
    try check(virDomainAttachDeviceFlags(raw, xml, VIR_DOMAIN_AFFECT_LIVE.rawValue),
              "virDomainAttachDeviceFlags", domain: name)
  }

  /// Returns as soon as QEMU has asked the guest to let go, not when it has.
  func detachLive(alias: String) throws(LibvirtError) {
    try check(virDomainDetachDeviceAlias(raw, alias, VIR_DOMAIN_AFFECT_LIVE.rawValue),
              "virDomainDetachDeviceAlias", domain: name)
  }

  /// Sets (or, with nil, removes) the metadata element of `uri` in the live definition.
  func setMetadata(_ xml: String?, prefix: String, uri: String) throws(LibvirtError) {
    try check(virDomainSetMetadata(raw, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), xml,
                                   xml == nil ? nil : prefix, uri, VIR_DOMAIN_AFFECT_LIVE.rawValue),
              "virDomainSetMetadata", domain: name)
  }

  /// The metadata element of `uri` in the live definition, nil when there is none.
  func metadata(uri: String) throws(LibvirtError) -> String? {
    if let s = takeString(virDomainGetMetadata(raw, Int32(VIR_DOMAIN_METADATA_ELEMENT.rawValue), uri,
                                               VIR_DOMAIN_AFFECT_LIVE.rawValue)) {
      return s
    }
    let e = lastError("virDomainGetMetadata", domain: name)
    if e.code == ErrorCode.noDomainMetadata { return nil }
    throw e
  }

  /// libvirt's counters for one NIC, from the guest's side (libvirt swaps a
  /// tap's rx/tx and leaves a macvtap's as they are, which already match).
  func interfaceStats(device: String) throws(LibvirtError) -> VMCounters {
    var s = virDomainInterfaceStatsStruct()
    try check(virDomainInterfaceStats(raw, device, &s, MemoryLayout<virDomainInterfaceStatsStruct>.size),
              "virDomainInterfaceStats", domain: name)
    // -1 means "this driver does not count it".
    func value(_ v: Int64) -> UInt64? { v < 0 ? nil : UInt64(v) }
    return VMCounters(rxBytes: value(s.rx_bytes) ?? 0, txBytes: value(s.tx_bytes) ?? 0,
                      rxPackets: value(s.rx_packets), txPackets: value(s.tx_packets))
  }
}
