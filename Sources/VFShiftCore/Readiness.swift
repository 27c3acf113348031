/// One line of `vfshift doctor`: what was checked, on what, and — where it is
/// not PASS — what the operator should do. In the spirit of libvirt's
/// `virt-host-validate`: a host is ready when nothing FAILs.
public struct ReadinessCheck: Sendable, Equatable {
  public enum Status: String, Sendable, Equatable, Comparable {
    case pass = "PASS", warn = "WARN", fail = "FAIL"
    private var rank: Int { self == .pass ? 0 : self == .warn ? 1 : 2 }
    public static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }
  }

  /// What the check is about: "libvirt", "policy", "pool vfs", "vm db1", "privileges".
  public var subject: String
  /// The check itself, as a short phrase: "reachable at qemu:///system".
  public var check: String
  public var status: Status
  /// What was found.
  public var detail: String
  /// What to do, for WARN and FAIL.
  public var fix: String?

  public init(_ subject: String, _ check: String, _ status: Status, _ detail: String, fix: String? = nil) {
    self.subject = subject; self.check = check; self.status = status; self.detail = detail; self.fix = fix
  }
}

public struct ReadinessReport: Sendable, Equatable {
  public var checks: [ReadinessCheck]
  public init(checks: [ReadinessCheck]) { self.checks = checks }

  public var failed: Int { checks.count { $0.status == .fail } }
  public var warned: Int { checks.count { $0.status == .warn } }
  public var ready: Bool { failed == 0 }

  /// One line a check (`STATUS  subject: check — detail`), the fix indented
  /// under it, and a summary line.
  public func text() -> String {
    var out = ""
    for c in checks {
      out += "\(c.status.rawValue)  \(c.subject): \(c.check) — \(c.detail)\n"
      if let fix = c.fix, c.status != .pass { out += "      fix: \(fix)\n" }
    }
    out += "\(checks.count) checks: \(checks.count - failed - warned) passed, \(warned) warned, \(failed) failed"
    out += ready ? " — ready\n" : " — not ready\n"
    return out
  }

  public func json() -> String {
    func s(_ v: String) -> String { "\"" + jsonEscape(v) + "\"" }
    let items = checks.map { c in
      "{\"subject\":\(s(c.subject)),\"check\":\(s(c.check)),\"status\":\(s(c.status.rawValue)),"
        + "\"detail\":\(s(c.detail)),\"fix\":\(c.fix.map(s) ?? "null")}"
    }
    return "{\"ready\":\(ready),\"failed\":\(failed),\"warned\":\(warned),\"checks\":[\(items.joined(separator: ","))]}\n"
  }
}
