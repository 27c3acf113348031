import Foundation

/// libvirt's own domain schema (`virt-xml-validate`) over a minimal domain
/// holding `devices`: what the adapter generates must pass what libvirt would
/// check, without a libvirtd.
public enum DomainSchema {
  public static let tool = "/usr/bin/virt-xml-validate"
  public static var available: Bool { FileManager.default.isExecutableFile(atPath: tool) }

  public static func domain(devices: [String], type: String = "qemu", machine: String = "pc") -> String {
    """
    <domain type='\(type)'><name>schema-check</name><memory unit='MiB'>128</memory>
    <os><type arch='x86_64' machine='\(machine)'>hvm</type></os>
    <devices>\(devices.joined(separator: "\n"))</devices></domain>
    """
  }

  /// The validator's exit status and output for `domain` (a whole domain XML).
  public static func validate(_ domain: String) throws -> (status: Int32, output: String) {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("vfshift-schema-\(getpid())-\(UUID().uuidString).xml")
    try domain.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    let r = try TestBed.execute([tool, file.path, "domain"])
    return (r.status, r.stdout + r.stderr)
  }
}
