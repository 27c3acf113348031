// TEMPORARY (issue #11, VF counter sources): delete this file at the merge
// with the dlopen rewrite of Internals/Calls.swift, which adds the same
// binding, `DomainHandle.qemuAgentCommand(_:timeoutSeconds:)`, beside the
// other vir* calls. Until then CLibvirt has no libvirt-qemu.h, so the symbol
// is looked up in libvirt-qemu.so.0 (Debian's libvirt0) at run time.

import CLibvirt
import Glibc

/// `char *virDomainQemuAgentCommand(virDomainPtr, const char *cmd, int timeout, unsigned int flags)`
private typealias QemuAgentCommandFunction =
  @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UInt32) -> UnsafeMutablePointer<CChar>?

private let qemuAgentCommandFunction: Result<QemuAgentCommandFunction, LibvirtError> = {
  guard let library = dlopen("libvirt-qemu.so.0", RTLD_NOW | RTLD_GLOBAL) else {
    let why = dlerror().map { String(cString: $0) } ?? "dlopen failed"
    return .failure(LibvirtError(function: "virDomainQemuAgentCommand", domain: nil, code: -1,
                                 message: "libvirt-qemu.so.0 cannot be loaded: \(why)"))
  }
  guard let symbol = dlsym(library, "virDomainQemuAgentCommand") else {
    return .failure(LibvirtError(function: "virDomainQemuAgentCommand", domain: nil, code: -1,
                                 message: "libvirt-qemu.so.0 has no virDomainQemuAgentCommand"))
  }
  return .success(unsafeBitCast(symbol, to: QemuAgentCommandFunction.self))
}()

extension DomainHandle {
  /// The guest agent's reply (JSON) to `json`; waits at most `timeoutSeconds`
  /// (libvirt: > 0 seconds, or -1 for its default). virDomainQemuAgentCommand.
  func qemuAgentCommand(_ json: String, timeoutSeconds: Int32) throws(LibvirtError) -> String {
    let function = try qemuAgentCommandFunction.get()
    // TEMPORARY: DomainHandle keeps its pointer private to Calls.swift; read
    // it through reflection rather than editing that file.
    guard let raw = Mirror(reflecting: self).children.first(where: { $0.label == "raw" })?.value as? OpaquePointer else {
      throw LibvirtError(function: "virDomainQemuAgentCommand", domain: name, code: -1, message: "no domain pointer")
    }
    guard let reply = function(raw, json, timeoutSeconds, 0) else {
      let e = virGetLastError()
      throw LibvirtError(function: "virDomainQemuAgentCommand", domain: name, code: e?.pointee.code ?? -1,
                         message: e?.pointee.message.map { String(cString: $0) } ?? "no message")
    }
    defer { free(reply) }
    return String(cString: reply)
  }
}
