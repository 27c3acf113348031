import Foundation
import Testing
import VFShiftCore
import VFShiftTestSupport

/// The command line's conventions, run as an operator runs the binary.
@Suite("CLI conventions")
struct CLITests {
  @Test("no command prints the help on stdout and exits 0, as swift-argument-parser does for a command without a default subcommand; so do 'vfshift help' and a bare command group")
  func noCommand() throws {
    let top = try Exec.run([vfshiftBinary, "--help"])
    #expect(top.status == 0 && top.stdout.contains("USAGE: vfshift <command> [options]"))
    for argv in [[], ["help"], ["policy"], ["trace"]] {
      let r = try Exec.run([vfshiftBinary] + argv)
      #expect(r.status == 0, "\(argv)")
      #expect(r.stdout == top.stdout, "\(argv): the same help on stdout")
      #expect(r.stderr.isEmpty, "\(argv): nothing on stderr")
    }
  }

  @Test("'vfshift help COMMAND' prints that command's help, exit 0; an unknown command is a usage error (64)")
  func helpCommand() throws {
    for command in [["whatif"], ["run"], ["policy", "check"], ["trace", "import"]] {
      let viaHelp = try Exec.run([vfshiftBinary, "help"] + command)
      let viaFlag = try Exec.run([vfshiftBinary] + command + ["--help"])
      #expect(viaHelp.status == 0 && viaHelp.stdout == viaFlag.stdout && viaHelp.stdout.contains("USAGE: vfshift \(command.joined(separator: " "))"),
              "\(command)")
    }
    let unknown = try Exec.run([vfshiftBinary, "help", "frobnicate"])
    #expect(unknown.status == 64 && unknown.stdout.isEmpty && unknown.stderr.contains("error: no help for unknown command 'frobnicate'"))
  }

  @Test("run --contention-every N: in the help; 0 or not a number is a usage error (64) naming the flag")
  func contentionEvery() throws {
    #expect(try Exec.run([vfshiftBinary, "run", "--help"]).stdout.contains("--contention-every N"))
    for bad in ["0", "x"] {
      let r = try Exec.run([vfshiftBinary, "run", "--policy", "/nonexistent.json", "--contention-every", bad])
      #expect(r.status == 64 && r.stderr.contains("--contention-every"), "\(bad): \(r.status) \(r.stderr)")
    }
  }

  static let missingFields = """
    {
      pools: [
        { name: "p" },
        { network: "n" },
      ],
      classes: [
        {
          match: { names: "*" },
          vf: "never",
        },
        { name: "x", match: { names: "y" }, vf: "never" },
      ],
    }
    """

  @Test("'is required' errors carry the line of the object the field is missing from")
  func requiredFieldLine() throws {
    do {
      _ = try Policy.parse(Self.missingFields, file: "p.json", defaultName: "p")
      Issue.record("accepted")
    } catch {
      let found = error.issues.map(\.description)
      #expect(found.contains("p.json:3: pools[0].network: is required"), "\(found)")
      #expect(found.contains("p.json:4: pools[1].name: is required"), "\(found)")
      #expect(found.contains("p.json:7: classes[0].name: is required"), "\(found)")
      #expect(found.count == 3, "\(found)")
    }
    // And through the command, as an operator sees it.
    let scratch = Scratch("cli-required")
    let path = scratch.file("p.json")
    try Self.missingFields.write(toFile: path, atomically: true, encoding: .utf8)
    let check = try Exec.run([vfshiftBinary, "policy", "check", path])
    #expect(check.status == 1)
    #expect(check.stderr.contains("\(path):3: pools[0].network: is required"), "\(check.stderr)")
  }

  @Test("whatif's errors are 'error:' lines like every other command's: each issue of an invalid policy (as run gives them), and a missing trace")
  func whatifErrorPrefix() throws {
    let scratch = Scratch("cli-whatif")
    let path = scratch.file("p.json")
    try Self.missingFields.write(toFile: path, atomically: true, encoding: .utf8)
    let bad = try Exec.run([vfshiftBinary, "whatif", "--policy", path])
    #expect(bad.status == 1 && bad.stdout.isEmpty)
    let lines = bad.stderr.split(separator: "\n")
    #expect(lines.count == 3, "\(bad.stderr)")
    #expect(lines.allSatisfy { $0.hasPrefix("error: \(path):") }, "\(bad.stderr)")
    // The agent refuses the same policy the same way.
    let run = try Exec.run([vfshiftBinary, "run", "--policy", path, "--listen", "off", "--lock-file", scratch.file("lock"),
                            "--status-file", scratch.file("status.json")])
    #expect(run.status == 1)
    #expect(run.stderr.split(separator: "\n") == lines, "\(run.stderr)")
    let noTrace = try Exec.run([vfshiftBinary, "whatif", "--trace", scratch.file("none.trace"), "--policy", "\(TestBed.packageRoot.path)/policies/general.json"])
    #expect(noTrace.status == 1)
    #expect(noTrace.stderr == "error: \(scratch.file("none.trace")): no such file or directory\n", "\(noTrace.stderr)")
  }
}
