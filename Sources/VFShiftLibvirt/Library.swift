/// libvirt as a library on this host, before any connection: `vfshift doctor`
/// says which version it found, or why none.
public enum LibvirtLibrary {
  /// "9.0.0", or the error that names the package to install.
  public static func version() -> Result<String, LibvirtError> {
    libvirtLibraryVersion().map { v in "\(v / 1_000_000).\(v / 1_000 % 1_000).\(v % 1_000)" }
  }
}

extension LibvirtConnection {
  /// One command to a domain's QEMU guest agent, its reply JSON (libvirt-qemu's
  /// virDomainQemuAgentCommand). Blocks the caller up to `timeoutSeconds`.
  public func guestAgentCommand(uuid: String, _ json: String, timeoutSeconds: Int32) throws(LibvirtError) -> String {
    try connected("virDomainQemuAgentCommand").domain(uuid: uuid).qemuAgentCommand(json, timeoutSeconds: timeoutSeconds)
  }
}
