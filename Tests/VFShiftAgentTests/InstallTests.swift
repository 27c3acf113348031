import Foundation
import Testing
import VFShiftTestSupport

/// deploy/install and deploy/uninstall into a scratch root (`--root`), with the
/// binary these tests were built with (`--binary`) instead of a release build.
@Suite("deploy/install and deploy/uninstall", .serialized)
struct InstallTests {
  static let source = TestBed.packageRoot.path

  /// Root, for a mount namespace (always true on CI, where .ci/run is root).
  static var canBindMount: Bool {
    if TestBed.isCI || getuid() == 0 { return true }
    FileHandle.standardError.write(Data("[Tools] skipping systemd-analyze verify: needs root to bind-mount the root's /usr/local\n".utf8))
    return false
  }

  func install(_ root: String) throws -> Exec {
    try Exec.run(["\(Self.source)/deploy/install", "--root", root, "--binary", vfshiftBinary])
  }

  func uninstall(_ root: String) throws -> Exec {
    try Exec.run(["\(Self.source)/deploy/uninstall", "--root", root])
  }

  /// Every regular file under `root`, as a path on the installed system.
  func files(under root: String) -> Set<String> {
    var out = Set<String>()
    let e = FileManager.default.enumerator(atPath: root)
    while let rel = e?.nextObject() as? String {
      var isDir: ObjCBool = false
      if FileManager.default.fileExists(atPath: "\(root)/\(rel)", isDirectory: &isDir), !isDir.boolValue { out.insert("/" + rel) }
    }
    return out
  }

  func mode(_ path: String) throws -> Int {
    try (FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
  }

  @Test("install --root lays out binary, unit, man page, data and docs, all listed; the installed binary finds its data; uninstall removes all of it")
  func layoutAndUninstall() throws {
    let scratch = Scratch("install")
    let root = scratch.file("root")
    let r = try install(root)
    #expect(r.status == 0, "\(r.stderr)")
    let installed = files(under: root)
    for path in ["/usr/local/bin/vfshift", "/usr/local/lib/systemd/system/vfshift.service",
                 "/usr/local/share/man/man1/vfshift.1", "/etc/vfshift/policy.json",
                 "/usr/local/share/vfshift/policies/general.json", "/usr/local/share/vfshift/policies/traces/bitbrains-8vm.trace",
                 "/usr/local/share/vfshift/prometheus/vfshift-alerts.yml", "/usr/local/share/vfshift/grafana/vfshift.json",
                 "/usr/local/share/doc/vfshift/README.md"] {
      #expect(installed.contains(path), "\(path) installed")
    }
    #expect(try mode(root + "/usr/local/bin/vfshift") == 0o755)
    #expect(try mode(root + "/usr/local/lib/systemd/system/vfshift.service") == 0o644)
    #expect(FileManager.default.contentsEqual(atPath: root + "/usr/local/bin/vfshift", andPath: vfshiftBinary))
    #expect(FileManager.default.contentsEqual(atPath: root + "/usr/local/lib/systemd/system/vfshift.service",
                                              andPath: Self.source + "/deploy/vfshift.service"))
    #expect(FileManager.default.contentsEqual(atPath: root + "/etc/vfshift/policy.json", andPath: Self.source + "/policies/general.json"))
    // The manifest names every file install put, and the policy (judged by its content) only by omission.
    let manifest = try String(contentsOfFile: root + "/usr/local/share/vfshift/installed-files", encoding: .utf8)
      .split(separator: "\n").map(String.init)
    #expect(Set(manifest) == installed.subtracting(["/etc/vfshift/policy.json"]))

    // Run from / so neither the working directory nor a source tree is what it finds.
    let whatif = try Exec.run([root + "/usr/local/bin/vfshift", "whatif", "--json"], cwd: "/")
    #expect(whatif.status == 0, "\(whatif.stderr)")
    let doc = try JSONSerialization.jsonObject(with: Data(whatif.stdout.utf8)) as? [String: Any]
    let tracePath = (doc?["trace"] as? [String: Any])?["path"] as? String
    #expect(tracePath == root + "/usr/local/share/vfshift/policies/traces/bitbrains-8vm.trace")

    let u = try uninstall(root)
    #expect(u.status == 0, "\(u.stderr)")
    #expect(files(under: root).isEmpty, "left behind: \(files(under: root).sorted())")
    #expect(u.stdout.contains("removed \(root)/etc/vfshift/policy.json (unchanged from the shipped default)"))
    #expect(!FileManager.default.fileExists(atPath: root + "/etc/vfshift"))
    #expect(!FileManager.default.fileExists(atPath: root + "/usr/local/share/vfshift"))
  }

  @Test("an operator's policy is never overwritten, by an install or an upgrade, and uninstall keeps it")
  func operatorPolicyKept() throws {
    let scratch = Scratch("install-policy")
    let root = scratch.file("root")
    let policy = root + "/etc/vfshift/policy.json"
    try FileManager.default.createDirectory(atPath: root + "/etc/vfshift", withIntermediateDirectories: true)
    let mine = "{ // the operator's\n  classes: [ { name: \"all\", match: { names: \"*\" }, vf: \"never\" } ],\n}\n"
    try mine.write(toFile: policy, atomically: true, encoding: .utf8)
    for pass in ["install", "upgrade"] {
      let r = try install(root)
      #expect(r.status == 0, "\(pass): \(r.stderr)")
      #expect(r.stdout.contains("kept /etc/vfshift/policy.json"), "\(pass): \(r.stdout)")
      #expect(try String(contentsOfFile: policy, encoding: .utf8) == mine, "\(pass) left the operator's policy as it was")
    }
    let u = try uninstall(root)
    #expect(u.status == 0, "\(u.stderr)")
    #expect(u.stdout.contains("kept \(policy)"))
    #expect(files(under: root) == ["/etc/vfshift/policy.json"])
    #expect(try String(contentsOfFile: policy, encoding: .utf8) == mine)
  }

  @Test("install and uninstall: usage errors exit 64 with the usage, --help exits 0 on stdout, uninstall of nothing fails")
  func scriptConventions() throws {
    for script in ["install", "uninstall"] {
      let bad = try Exec.run(["\(Self.source)/deploy/\(script)", "--bogus"])
      #expect(bad.status == 64 && bad.stderr.contains("error: unknown argument '--bogus'") && bad.stderr.contains("Usage: deploy/\(script)"))
      let help = try Exec.run(["\(Self.source)/deploy/\(script)", "--help"])
      #expect(help.status == 0 && help.stdout.contains("--root DIR") && help.stderr.isEmpty)
    }
    let scratch = Scratch("uninstall-empty")
    let nothing = try uninstall(scratch.path)
    #expect(nothing.status == 1 && nothing.stderr.contains("nothing installed by deploy/install there"))
  }

  @Test("the installed unit passes systemd-analyze verify, which sees the installed binary it names",
        .enabled(if: Tools.present(["systemd-analyze": "systemd", "unshare": "util-linux"], for: "systemd-analyze verify")
                 && InstallTests.canBindMount))
  func unitVerifies() throws {
    let scratch = Scratch("install-verify")
    let root = scratch.file("root")
    #expect(try install(root).status == 0)
    // The unit is checked as it would run: the host's systemd, units and
    // /bin/kill, with the installed /usr/local in place of the host's — in a
    // mount namespace of its own, gone when the command ends.
    func verify() throws -> Exec {
      try Exec.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    "mount --bind \"$1/usr/local\" /usr/local && exec systemd-analyze verify /usr/local/lib/systemd/system/vfshift.service",
                    "sh", root])
    }
    let ok = try verify()
    #expect(ok.status == 0, "\(ok.stderr)")
    #expect(ok.stderr.isEmpty, "\(ok.stderr)")
    // It checks the installed tree, not the host's: without the binary it fails.
    try FileManager.default.removeItem(atPath: root + "/usr/local/bin/vfshift")
    let missing = try verify()
    #expect(missing.status != 0)
    #expect(missing.stderr.contains("/usr/local/bin/vfshift is not executable"), "\(missing.stderr)")
  }

  @Test("the installed man page is lint-clean for mandoc and groff, renders with man -l, and has every command and option --help shows",
        .enabled(if: Tools.present(["mandoc": "mandoc", "groff": "groff-base", "man": "man-db"], for: "the man page checks")))
  func manPage() throws {
    let scratch = Scratch("install-man")
    let root = scratch.file("root")
    #expect(try install(root).status == 0)
    let page = root + "/usr/local/share/man/man1/vfshift.1"
    let lint = try Exec.run([try Tools.require("mandoc", package: "mandoc"), "-Tlint", "-W", "warning", page])
    #expect(lint.status == 0 && lint.stdout.isEmpty && lint.stderr.isEmpty, "mandoc: \(lint.stdout)\(lint.stderr)")
    let groff = try Exec.run([try Tools.require("groff", package: "groff-base"), "-man", "-Tutf8", "-ww", "-z", page])
    #expect(groff.status == 0 && groff.stderr.isEmpty, "groff: \(groff.stderr)")
    // Wide enough that no line wraps or hyphenates, so options read as typed.
    let man = try Exec.run([try Tools.require("man", package: "man-db"), "-P", "cat", "-l", page], environment: ["MANWIDTH": "1000"])
    #expect(man.status == 0, "\(man.stderr)")
    let text = man.stdout
    #expect(text.contains("VFSHIFT(1)") && text.contains("SYNOPSIS") && text.contains("EXIT STATUS"))

    // The page is made from the help: every command of `vfshift --help`, its
    // usage line and each of its options.
    let top = try Exec.run([vfshiftBinary, "--help"])
    let commands = top.stdout.split(separator: "\n", omittingEmptySubsequences: false)
      .drop { $0 != "COMMANDS:" }.dropFirst().prefix { $0.hasPrefix("  ") }
      .map { $0.split(separator: " ").prefix { $0.first?.isLowercase == true }.joined(separator: " ") }
    #expect(commands.count >= 7, "\(commands)")
    for command in commands {
      #expect(text.contains("vfshift \(command)\n"), "section for \(command)")
      let help = try Exec.run([vfshiftBinary] + command.split(separator: " ").map(String.init) + ["--help"])
      #expect(help.status == 0, "\(command) --help")
      for line in help.stdout.split(separator: "\n") {
        if line.hasPrefix("USAGE: ") { #expect(text.contains(line.dropFirst(7)), "\(command): usage \(line)") }
        if line.hasPrefix("  -") {
          for option in line.split(separator: " ").prefix(while: { $0.hasPrefix("-") }) {
            let name = option.hasSuffix(",") ? option.dropLast() : option
            #expect(text.contains(name), "\(command): option \(name)")
          }
        }
      }
    }
  }
}
