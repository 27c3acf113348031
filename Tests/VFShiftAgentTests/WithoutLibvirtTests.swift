import Foundation
import Testing
import VFShiftTestSupport

/// The commands that need no libvirt run, and the ones that do fail in one
/// line naming the package, on a host where libvirt cannot be loaded. The
/// host is made so in a private mount namespace (unshare -m, root): libvirt's
/// libraries are covered by /dev/null there, so dlopen fails as on a box
/// without the package, and nothing outside the namespace sees it.
@Suite("without libvirt", .serialized)
struct WithoutLibvirtTests {
  static let hide = """
    for so in libvirt.so.0 libvirt-qemu.so.0; do
      for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
        if [ -e "$dir/$so" ]; then mount --bind /dev/null "$(readlink -f "$dir/$so")"; fi
      done
    done
    """

  static var canIsolate: Bool {
    if TestBed.isCI { return true }
    if getuid() == 0 { return true }
    FileHandle.standardError.write(Data("skipping 'without libvirt' tests (set CI=true to fail instead): not root, no private mount namespace\n".utf8))
    return false
  }

  /// Runs `vfshift ARGS` where libvirt cannot be loaded; (exit status, stdout, stderr).
  func withoutLibvirt(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let quoted = ([vfshiftBinary] + arguments).map { "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" }
    let r = try TestBed.execute(["unshare", "-m", "sh", "-ec", Self.hide + "\nexec " + quoted.joined(separator: " ")])
    return (r.status, r.stdout, r.stderr)
  }

  @Test("run fails in one line naming libvirt0, exit 1", .enabled(if: canIsolate))
  func runNamesThePackage() throws {
    let scratch = Scratch("nolibvirt")
    try bedPolicy().write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
    let r = try withoutLibvirt(["run", "--policy", scratch.file("p.json"), "--listen", "off",
                                "--status-file", scratch.file("status.json"), "--lock-file", scratch.file("lock")])
    #expect(r.status == 1)
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "\(r.stderr)")
    #expect(r.stderr.hasPrefix("error: libvirt is not installed: libvirt.so.0 could not be loaded"), "\(r.stderr)")
    #expect(r.stderr.contains("install the Debian package libvirt0"), "\(r.stderr)")
  }

  @Test("whatif, policy check and trace run with no libvirt", .enabled(if: canIsolate))
  func offlineCommandsRun() throws {
    let root = TestBed.packageRoot.path
    let scratch = Scratch("nolibvirt-offline")
    let whatif = try withoutLibvirt(["whatif", "--trace", "\(root)/policies/traces/paper-8vm.trace",
                                     "--policy", "\(root)/policies/paper-multinetwork.json"])
    #expect(whatif.status == 0, "\(whatif.stderr)")
    #expect(whatif.stdout.contains("oracle"))
    let check = try withoutLibvirt(["policy", "check", "\(root)/policies/general.json"])
    #expect(check.status == 0, "\(check.stderr)")
    let scenario = try withoutLibvirt(["trace", "scenario", "--out", scratch.file("s.trace")])
    #expect(scenario.status == 0, "\(scenario.stderr)")
    #expect(FileManager.default.fileExists(atPath: scratch.file("s.trace")))
  }
}
