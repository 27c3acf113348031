/// What libvirt said happened, as a Swift value. Domains are named by UUID
/// because names can change and be reused.
public enum DomainEvent: Sendable, Equatable {
  case deviceAdded(uuid: String, alias: String)
  /// The guest let go of the device and QEMU removed it: the end of a detach.
  case deviceRemoved(uuid: String, alias: String)
  /// The guest refused the unplug (or QEMU reported a failure).
  case deviceRemovalFailed(uuid: String, alias: String)
  case lifecycle(uuid: String, LifecycleKind)
  case metadataChanged(uuid: String, namespaceURI: String?)
  /// The connection to libvirtd is gone; events may have been missed.
  case disconnected(reason: String)
  /// A new connection is open and the callbacks are registered again: anything
  /// remembered from before may be stale and must be read anew.
  case reconnected

  /// The domain this event is about, if any.
  public var uuid: String? {
    switch self {
    case .deviceAdded(let u, _), .deviceRemoved(let u, _), .deviceRemovalFailed(let u, _),
         .lifecycle(let u, _), .metadataChanged(let u, _):
      u
    case .disconnected, .reconnected:
      nil
    }
  }
}

/// virDomainEventType, without the detail.
public enum LifecycleKind: Sendable, Equatable {
  case defined, undefined, started, suspended, resumed, stopped, shutdown, pmSuspended, crashed
  case other(Int32)
}
