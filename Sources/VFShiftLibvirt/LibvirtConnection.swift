import Dispatch
import Foundation
import Synchronization
import VFShiftCore

/// How the connection keeps itself alive and comes back after libvirtd restarts.
public struct ReconnectPolicy: Sendable, Equatable {
  public var firstDelay: Duration
  public var maximumDelay: Duration
  /// libvirt keepalive: a daemon that stops answering for interval * count
  /// seconds counts as gone, even if its socket stays open.
  public var keepAliveIntervalSeconds: Int32
  public var keepAliveCount: UInt32

  public init(firstDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(5),
              keepAliveIntervalSeconds: Int32 = 5, keepAliveCount: UInt32 = 3) {
    self.firstDelay = firstDelay
    self.maximumDelay = maximumDelay
    self.keepAliveIntervalSeconds = keepAliveIntervalSeconds
    self.keepAliveCount = keepAliveCount
  }
}

/// A running (or paused) domain as libvirt lists it.
public struct DomainInfo: Sendable, Equatable, Hashable {
  public var uuid: String
  public var name: String
  public init(uuid: String, name: String) { self.uuid = uuid; self.name = name }
}

/// A connection to libvirt that outlives libvirtd restarts. Thread-safe: any
/// thread or task may call it. Calls block for one libvirt round trip; the
/// async actions run them off the cooperative pool.
///
/// When libvirtd goes away every subscriber gets `.disconnected`, calls throw
/// until a new connection is open, and then `.reconnected` follows once the
/// callbacks are registered again.
public final class LibvirtConnection: Sendable {
  public let uri: String
  public let reconnectPolicy: ReconnectPolicy

  private struct State: Sendable {
    var handle: ConnectionHandle?
    /// Tells a close callback of a connection already replaced from the current one.
    var epoch: UInt64 = 0
    var subscribers: [UInt64: AsyncStream<DomainEvent>.Continuation] = [:]
    var nextSubscriber: UInt64 = 0
    var closed = false
    var lastLoss: String?
  }
  private let state = Mutex(State())

  /// Opens the connection (registering libvirt's event loop once per process
  /// first) and subscribes to device, lifecycle and metadata events of all domains.
  public init(uri: String = "qemu:///system", reconnectPolicy: ReconnectPolicy = .init()) throws(LibvirtError) {
    self.uri = uri
    self.reconnectPolicy = reconnectPolicy
    try install()
  }

  deinit {
    let subscribers = state.withLock { s in
      s.closed = true
      return s.subscribers.values
    }
    for c in subscribers { c.finish() }
  }

  /// Closes the connection now; later calls throw, streams end.
  public func close() {
    let (subscribers, handle) = state.withLock { s in
      s.closed = true
      let out = (Array(s.subscribers.values), s.handle)
      s.subscribers = [:]
      s.handle = nil
      return out
    }
    for c in subscribers { c.finish() }
    _ = handle  // released here, on the caller's thread, never on the event loop
  }

  public var isConnected: Bool { state.withLock { $0.handle != nil } }

  // MARK: Events

  /// A new stream of every event from now on. Each call is its own subscriber;
  /// dropping or cancelling the iteration unsubscribes. Buffers without bound,
  /// so a subscriber must keep reading.
  public func subscribe() -> AsyncStream<DomainEvent> {
    let (stream, continuation) = AsyncStream.makeStream(of: DomainEvent.self)
    let id: UInt64? = state.withLock { s in
      if s.closed { return nil }
      s.nextSubscriber += 1
      s.subscribers[s.nextSubscriber] = continuation
      return s.nextSubscriber
    }
    guard let id else {
      continuation.finish()
      return stream
    }
    continuation.onTermination = { [weak self] _ in
      _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
    }
    return stream
  }

  /// Same as `subscribe()`: every access is a new subscription.
  public var events: AsyncStream<DomainEvent> { subscribe() }

  private func broadcast(_ event: DomainEvent) {
    let subscribers = state.withLock { Array($0.subscribers.values) }
    for c in subscribers { c.yield(event) }
  }

  // MARK: Connecting and reconnecting

  private func install() throws(LibvirtError) {
    let handle = try ConnectionHandle(uri: uri)
    let epoch = state.withLock { s in
      s.epoch += 1
      return s.epoch
    }
    let sink = EventSink(
      deliver: { [weak self] event in self?.broadcast(event) },
      closed: { [weak self] reason in self?.connectionLost(epoch: epoch, reason: reason) })
    try handle.register(sink)
    // Drivers without a daemon (test:///) have no keepalive; that is not an error for us.
    try? handle.setKeepAlive(intervalSeconds: reconnectPolicy.keepAliveIntervalSeconds,
                             count: reconnectPolicy.keepAliveCount)
    let installed = state.withLock { s in
      guard !s.closed, s.epoch == epoch else { return false }
      s.handle = handle
      s.lastLoss = nil
      return true
    }
    if !installed { throw .notConnected("virConnectOpen", uri: uri, why: "connection closed while opening") }
  }

  /// Runs on libvirt's event loop thread: must not call libvirt or release the handle there.
  private func connectionLost(epoch: UInt64, reason: String) {
    let lost: ConnectionHandle? = state.withLock { s in
      guard s.epoch == epoch, !s.closed, let h = s.handle else { return nil }
      s.handle = nil
      s.lastLoss = reason
      return h
    }
    guard let lost else { return }
    broadcast(.disconnected(reason: reason))
    let policy = reconnectPolicy
    Thread.detachNewThread { [weak self] in
      var dead: ConnectionHandle? = lost
      dead = nil  // virConnectClose of the dead connection, off the event loop
      _ = dead
      var delay = policy.firstDelay
      while true {
        Thread.sleep(forTimeInterval: delay.seconds)
        guard let self, !self.state.withLock({ $0.closed }) else { return }
        do throws(LibvirtError) {
          try self.install()
          self.broadcast(.reconnected)
          return
        } catch {
          self.state.withLock { $0.lastLoss = "\(reason); reconnect failed: \(error.message)" }
          delay = min(delay * 2, policy.maximumDelay)
        }
      }
    }
  }

  // MARK: Calls

  func connected(_ function: String) throws(LibvirtError) -> ConnectionHandle {
    let (handle, why) = state.withLock { ($0.handle, $0.closed ? "closed" : ($0.lastLoss ?? "not open")) }
    guard let handle else { throw .notConnected(function, uri: uri, why: why) }
    return handle
  }

  func withDomain<T>(_ uuid: String, _ function: String,
                     _ body: (DomainHandle) throws(LibvirtError) -> T) throws(LibvirtError) -> T {
    let domain = try connected(function).domain(uuid: uuid)
    return try body(domain)
  }

  /// Every active (running or paused) domain.
  public func runningDomains() throws(LibvirtError) -> [DomainInfo] {
    try connected("virConnectListAllDomains").activeDomains().map { DomainInfo(uuid: $0.uuid, name: $0.name) }
  }

  /// Whether the domain is running or paused (false when it does not exist).
  public func isActive(uuid: String) throws(LibvirtError) -> Bool {
    do {
      return try withDomain(uuid, "virDomainIsActive") { d throws(LibvirtError) in try d.isActive() }
    } catch where error.isNoDomain {
      return false
    }
  }

  /// The live domain XML.
  public func liveXML(uuid: String) throws(LibvirtError) -> String {
    try withDomain(uuid, "virDomainGetXMLDesc") { d throws(LibvirtError) in try d.xml() }
  }

  /// Hot-plugs a device into the running domain only (VIR_DOMAIN_AFFECT_LIVE).
  ///
  /// Never into the persistent config as well: a VF written into the config
  /// would make the next boot depend on a free VF in the pool, and a VM that
  /// restarts should come back on the NIC its operator defined. A swap is a
  /// runtime state; the agent re-decides it after a restart.
  public func attachDevice(uuid: String, xml: String) throws(LibvirtError) {
    try withDomain(uuid, "virDomainAttachDeviceFlags") { d throws(LibvirtError) in try d.attachLive(xml) }
  }

  /// Asks for the live device with this alias to be unplugged. Returns at once:
  /// only DEVICE_REMOVED (or the live XML) says the guest has let go.
  public func detachDevice(uuid: String, alias: String) throws(LibvirtError) {
    try withDomain(uuid, "virDomainDetachDeviceAlias") { d throws(LibvirtError) in try d.detachLive(alias: alias) }
  }

  /// Sets the live metadata element of `namespaceURI` (`xml` is the element,
  /// unprefixed; libvirt adds `prefix`); nil removes it. Emits METADATA_CHANGE.
  /// Live only, like the devices it describes.
  public func setMetadata(uuid: String, namespaceURI: String, prefix: String, xml: String?) throws(LibvirtError) {
    try withDomain(uuid, "virDomainSetMetadata") { d throws(LibvirtError) in
      try d.setMetadata(xml, prefix: prefix, uri: namespaceURI)
    }
  }

  /// The live metadata element of `namespaceURI`, nil when there is none.
  public func metadata(uuid: String, namespaceURI: String) throws(LibvirtError) -> String? {
    try withDomain(uuid, "virDomainGetMetadata") { d throws(LibvirtError) in try d.metadata(uri: namespaceURI) }
  }

  /// libvirt's counters for one NIC (`device` is its target dev, e.g. vnet3,
  /// or its alias), already from the VM's side whatever the device kind.
  /// One lookup and one round trip per NIC: the per-interface path vfshift's
  /// one-read-per-cycle /proc/net/dev read is compared against.
  public func interfaceStats(uuid: String, device: String) throws(LibvirtError) -> VMCounters {
    try withDomain(uuid, "virDomainInterfaceStats") { d throws(LibvirtError) in try d.interfaceStats(device: device) }
  }
}

// MARK: - Blocking calls off the cooperative pool

private let blockingCalls = DispatchQueue(label: "vfshift.libvirt.calls", attributes: .concurrent)

/// Runs a blocking libvirt call on a queue of its own so that a slow daemon
/// does not hold one of the (here: two) cooperative threads.
func offload<T: Sendable>(_ body: @escaping @Sendable () throws(LibvirtError) -> T) async throws(LibvirtError) -> T {
  let result: Result<T, LibvirtError> = await withCheckedContinuation { c in
    blockingCalls.async {
      do throws(LibvirtError) { c.resume(returning: .success(try body())) } catch { c.resume(returning: .failure(error)) }
    }
  }
  return try result.get()
}

extension Duration {
  var seconds: Double {
    let (s, atto) = components
    return Double(s) + Double(atto) / 1e18
  }
}
