/// Which build runs: `vfshift --version` and the `vfshift_build_info` metric
/// read it here, so the two never disagree.
public enum BuildInfo {
  public static let version = "0.1.0"
  /// The compiler's language version, major.minor: exporters label their
  /// build_info with the toolchain (Go's goversion), and Swift has no
  /// run-time query for it.
  public static let swift: String = {
    #if compiler(>=6.4)
    "6.4+"
    #elseif compiler(>=6.3)
    "6.3"
    #elseif compiler(>=6.2)
    "6.2"
    #elseif compiler(>=6.1)
    "6.1"
    #else
    "6.0"
    #endif
  }()
}
