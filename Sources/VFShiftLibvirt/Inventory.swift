import Synchronization

/// How often the inventory read libvirt: one full read lists and parses every
/// domain, a domain read parses one. Steady state adds neither.
public struct InventoryReadCounts: Sendable, Equatable {
  public var fullReads: Int
  public var domainReads: Int
}

/// Every running domain's `DomainInventory`, kept current from libvirt's
/// events: a device, lifecycle or metadata event re-reads that one domain's
/// live XML; a reconnect re-reads all of them. Between events nothing is read,
/// so `snapshot()` each cycle costs a copy, not a round trip per domain.
public final class Inventory: Sendable {
  public let connection: LibvirtConnection

  private struct State: Sendable {
    var domains: [String: DomainInventory] = [:]
    var generation: UInt64 = 0
    /// `snapshot()`'s answer and the generation it was sorted at: sorting
    /// 1,000 domains by name each cycle cost more than observing them.
    var sorted: (generation: UInt64, domains: [DomainInventory])?
    var stale = true
    var counts = InventoryReadCounts(fullReads: 0, domainReads: 0)
    /// Domains whose XML could not be read as vfshift needs it, by UUID: left out, never guessed.
    var unreadable: [String: String] = [:]
    var task: Task<Void, Never>?
  }
  private let state = Mutex(State())

  public init(connection: LibvirtConnection) {
    self.connection = connection
  }

  deinit { state.withLock { $0.task?.cancel() } }

  /// Subscribes to events first (so none is lost), reads every domain, then
  /// keeps following the events until `stop()`.
  public func start() async throws(LibvirtError) {
    let events = connection.subscribe()
    try await offload { [self] () throws(LibvirtError) in try refreshAll() }
    let task = Task.detached { [weak self] in
      for await event in events {
        guard let self else { return }
        await self.apply(event)
      }
    }
    state.withLock { s in
      s.task?.cancel()
      s.task = task
    }
  }

  public func stop() {
    state.withLock { s in
      s.task?.cancel()
      s.task = nil
    }
  }

  /// All known domains, by name.
  public func snapshot() -> [DomainInventory] {
    state.withLock { s in
      if let sorted = s.sorted, sorted.generation == s.generation { return sorted.domains }
      let domains = s.domains.values.sorted { ($0.name, $0.uuid) < ($1.name, $1.uuid) }
      s.sorted = (s.generation, domains)
      return domains
    }
  }

  public func domain(uuid: String) -> DomainInventory? { state.withLock { $0.domains[uuid] } }

  /// Grows by one whenever the inventory's content changes.
  public var generation: UInt64 { state.withLock { $0.generation } }

  /// True while disconnected from libvirtd (and before the first read):
  /// the snapshot is the last one known.
  public var isStale: Bool { state.withLock { $0.stale } }

  public var readCounts: InventoryReadCounts { state.withLock { $0.counts } }

  /// Domains left out of the inventory and why (libvirt function or XML path).
  public var unreadable: [String: String] { state.withLock { $0.unreadable } }

  /// Lists and reads every running domain anew.
  public func refreshAll() throws(LibvirtError) {
    var domains: [String: DomainInventory] = [:]
    var unreadable: [String: String] = [:]
    for info in try connection.runningDomains() {
      do throws(LibvirtError) {
        let xml = try connection.liveXML(uuid: info.uuid)
        do throws(DomainXMLError) {
          domains[info.uuid] = try parseDomainXML(xml)
        } catch {
          unreadable[info.uuid] = "\(info.name): \(error)"
        }
      } catch where error.isNoDomain {
        continue  // went away between the list and the read
      }
    }
    state.withLock { s in
      s.counts.fullReads += 1
      s.stale = false
      s.unreadable = unreadable
      if s.domains != domains {
        s.domains = domains
        s.generation += 1
      }
    }
  }

  /// Reads one domain anew (or forgets it when it no longer runs).
  public func refresh(uuid: String) throws(LibvirtError) {
    var updated: DomainInventory?
    var problem: String?
    if try connection.isActive(uuid: uuid) {
      do throws(LibvirtError) {
        let xml = try connection.liveXML(uuid: uuid)
        do throws(DomainXMLError) {
          updated = try parseDomainXML(xml)
        } catch {
          problem = "\(error)"
        }
      } catch where error.isNoDomain {
        updated = nil
      }
    }
    state.withLock { s in
      s.counts.domainReads += 1
      s.unreadable[uuid] = problem
      if s.domains[uuid] != updated {
        s.domains[uuid] = updated
        s.generation += 1
      }
    }
  }

  private func apply(_ event: DomainEvent) async {
    switch event {
    case .disconnected:
      state.withLock { $0.stale = true }
    case .reconnected:
      // Everything may have changed while we were away: re-read all, and keep
      // trying for a while if the daemon is still settling.
      var delay = Duration.milliseconds(100)
      for _ in 0..<8 {
        do throws(LibvirtError) {
          try await offload { [self] () throws(LibvirtError) in try refreshAll() }
          return
        } catch {
          try? await Task.sleep(for: delay)
          delay *= 2
        }
      }
    default:
      guard let uuid = event.uuid, !uuid.isEmpty else { return }
      // A failure here (daemon going away) is followed by .reconnected, which re-reads all.
      try? await offload { [self] () throws(LibvirtError) in try refresh(uuid: uuid) }
    }
  }
}
