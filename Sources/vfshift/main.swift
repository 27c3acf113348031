import CMalloc
import Foundation
import VFShiftCore
import VFShiftAgent

let topHelp = """
OVERVIEW: vfshift — moves network-intensive VMs between virtio-net and SR-IOV VFs

USAGE: vfshift <command> [options]

COMMANDS:
  run            Run the host agent (observe → decide → swap), or --dry-run
  whatif         Replay a traffic trace through policies, side by side, against an oracle
  record         Capture live per-VM samples into a trace file for whatif
  status         Show what the running agent sees and decided, per VM
  doctor         Check that this host is ready for 'run': PASS / WARN / FAIL per check
  policy check   Validate policy files: file, line, field and reason for every error
  trace import   Convert GWA-T-12 per-VM CSV files into a vfshift trace
  trace scenario Write the paper's synthetic 8-VM scenario as a trace

Run 'vfshift <command> --help' for a command's options.
With no options, 'vfshift whatif' replays the bundled public trace through the bundled policies.
"""

func usageLine(_ command: String) -> String {
  switch command {
  case "whatif": "vfshift whatif [--trace PATH ...] [--policy FILE ...] [--vfs N] [--host-cores N] [--json] [--strict] [--report FILE.html]"
  case "policy check": "vfshift policy check FILE..."
  case "trace import": "vfshift trace import DIR... --out FILE [--vms LIST] [--rename OLD=NEW ...] [--label VM=LABEL ...] [--host-cores N] [--strict]"
  case "trace scenario": "vfshift trace scenario --out FILE [--seconds N] [--seed N]"
  case "doctor": "vfshift doctor [--policy FILE] [--connect URI] [--unit FILE] [--json]"
  default: agentUsage(command)
  }
}

func runCommand(_ argv: [String]) async -> ExitCode {
  // swift-argument-parser's convention: a command whose job is to hold
  // subcommands prints its help to stdout and exits 0 when given none.
  guard let first = argv.first else { print(topHelp); return .ok }
  if first == "-h" || first == "--help" { print(topHelp); return .ok }
  if first == "help" { return helpCommand(Array(argv.dropFirst())) }
  if first == "--version" { print("vfshift \(BuildInfo.version)"); return .ok }
  var command = first
  var rest = Array(argv.dropFirst())
  if first == "policy" || first == "trace" {
    if rest.isEmpty { print(topHelp); return .ok }
    guard let sub = rest.first, !sub.hasPrefix("-") else {
      if rest.contains("-h") || rest.contains("--help") { print(topHelp); return .ok }
      return usage(UsageError(message: "'\(first)' needs a subcommand", command: first))
    }
    command = "\(first) \(sub)"
    rest.removeFirst()
  }
  if rest.contains("-h") || rest.contains("--help") {
    print(help(for: command) ?? topHelp)
    return help(for: command) == nil ? .usage : .ok
  }
  do {
    switch command {
    case "whatif": return try whatif(rest)
    case "policy check": return try policyCheck(rest)
    case "trace import": return try traceImport(rest)
    case "trace scenario": return try traceScenario(rest)
    case "run", "record", "status": return try await agentCommand(command, rest)
    case "doctor": return try await doctorCommand(rest)
    default:
      return usage(UsageError(message: "unknown command '\(command)'", command: ""))
    }
  } catch let e as UsageError {
    return usage(e)
  } catch {
    printErrors(error)
    return .failure
  }
}

/// `vfshift help [COMMAND]`, as argument-parser's help subcommand; `--man`
/// (not listed) writes the vfshift(1) page that deploy/install installs.
func helpCommand(_ argv: [String]) -> ExitCode {
  if argv == ["--man"] { print(manPage(), terminator: ""); return .ok }
  if argv.isEmpty { print(topHelp); return .ok }
  let command = argv.joined(separator: " ")
  guard let text = help(for: command) else {
    return usage(UsageError(message: "no help for unknown command '\(command)'", command: ""))
  }
  print(text)
  return .ok
}

func usage(_ e: UsageError) -> ExitCode {
  printError("error: \(e.message)")
  printError("Usage: \(usageLine(e.command))")
  printError(e.command.isEmpty ? "See 'vfshift --help'." : "See 'vfshift \(e.command) --help'.")
  return .usage
}

// The agent's threads (its loop, libvirt's event loop, Dispatch's workers)
// each got a malloc arena of their own, every one keeping its freed memory
// resident; they allocate little and rarely at once, so one arena serves
// them all (bench-agent: RSS). Before any thread starts.
if let command = CommandLine.arguments.dropFirst().first, command == "run" || command == "record" {
  _ = mallopt(M_ARENA_MAX, 1)
}
let code = await runCommand(Array(CommandLine.arguments.dropFirst()))
exit(code.rawValue)
