/// A libvirt call that failed: which function, on which VM (its name, or the
/// UUID when the lookup itself failed), and libvirt's own code and message.
public struct LibvirtError: Error, CustomStringConvertible, Sendable, Equatable {
  public var function: String
  public var domain: String?
  /// libvirt's virErrorNumber.
  public var code: Int32
  public var message: String

  public init(function: String, domain: String?, code: Int32, message: String) {
    self.function = function
    self.domain = domain
    self.code = code
    self.message = message
  }

  public var description: String {
    // Not a call that failed but the library that is not there: the fix is all the operator needs.
    if isLibraryMissing { return message }
    return "\(function)\(domain.map { " on domain '\($0)'" } ?? ""): \(message) (libvirt error \(code))"
  }

  /// libvirt itself could not be loaded (not installed, or too old).
  public var isLibraryMissing: Bool { code == ErrorCode.libraryMissing }
  /// The domain does not exist (any more).
  public var isNoDomain: Bool { code == ErrorCode.noDomain }
  /// The device named in a detach is not in the domain.
  public var isDeviceMissing: Bool { code == ErrorCode.deviceMissing }
  /// The connection is gone: worth waiting for a reconnect rather than giving up.
  public var isConnectionLost: Bool {
    code == ErrorCode.noConnect || code == ErrorCode.rpc || code == ErrorCode.systemError
  }

  static func notConnected(_ function: String, uri: String, why: String) -> LibvirtError {
    LibvirtError(function: function, domain: nil, code: ErrorCode.noConnect,
                 message: "no connection to \(uri): \(why)")
  }
}

/// Why an action (attach, detach, restore, journal write) did not do what it was asked.
public enum ActionError: Error, CustomStringConvertible, Sendable, Equatable {
  /// libvirt refused; the VM is as it was before the call.
  case libvirt(LibvirtError)
  /// The live XML could not be read as a domain.
  case xml(DomainXMLError)
  /// The call was accepted but the live XML did not show the result in time.
  case deadlinePassed(action: String, domain: String, detail: String)
  /// The caller's input cannot be turned into a device (e.g. saved XML that is not an <interface>).
  case invalidInput(String)

  public var description: String {
    switch self {
    case .libvirt(let e): "\(e)"
    case .xml(let e): "\(e)"
    case .deadlinePassed(let action, let domain, let detail): "\(action) on domain '\(domain)': deadline passed: \(detail)"
    case .invalidInput(let s): "invalid input: \(s)"
    }
  }
}
