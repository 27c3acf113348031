import Foundation

/// Three VMs of the vendored GWA-T-12 extract (93, 95 and 96, busy all week),
/// each cut to its header and first 24 rows: small inputs in the published
/// format, byte for byte, for the tests that rewrite them as people's tools do.
let gwaExtract: [(name: String, text: String)] = ["93.csv", "95.csv", "96.csv"].map { name in
  let text = (try? String(contentsOfFile: "\(gwaExtractDirectory)/\(name)", encoding: .utf8)) ?? ""
  let lines = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(25)
  return (name, lines.joined(separator: "\n") + "\n")
}
