import Foundation

/// A usage mistake: printed with the command's usage line, exit 64 (EX_USAGE).
struct UsageError: Error {
  var message: String
  var command: String
}

/// Exit codes: 0 ok, 1 failure (invalid input, failed action), 64 usage.
enum ExitCode: Int32 {
  case ok = 0
  case failure = 1
  case usage = 64
}

/// A hand-rolled parser that keeps swift-argument-parser's conventions:
/// `--flag value` and `--flag=value`, repeated options, `-h/--help` anywhere.
struct Arguments {
  var command: String
  var options: [String: [String]] = [:]
  var flags: Set<String> = []
  var positionals: [String] = []

  init(_ argv: [String], command: String, valued: Set<String>, flags known: Set<String>) throws(UsageError) {
    self.command = command
    var i = 0
    while i < argv.count {
      let arg = argv[i]
      i += 1
      if arg == "--" { positionals.append(contentsOf: argv[i...]); break }
      guard arg.hasPrefix("-"), arg != "-" else { positionals.append(arg); continue }
      var name = arg
      var inline: String?
      if let eq = arg.firstIndex(of: "=") { name = String(arg[..<eq]); inline = String(arg[arg.index(after: eq)...]) }
      if valued.contains(name) {
        guard let value = inline ?? (i < argv.count ? argv[i] : nil) else {
          throw UsageError(message: "\(name) needs a value", command: command)
        }
        if inline == nil { i += 1 }
        options[name, default: []].append(value)
      } else if known.contains(name) {
        guard inline == nil else { throw UsageError(message: "\(name) takes no value", command: command) }
        flags.insert(name)
      } else {
        throw UsageError(message: "unknown option '\(name)'", command: command)
      }
    }
  }

  func value(_ name: String) throws(UsageError) -> String? {
    guard let values = options[name] else { return nil }
    guard values.count == 1 else { throw UsageError(message: "\(name) given \(values.count) times", command: command) }
    return values[0]
  }

  func values(_ name: String) -> [String] { options[name] ?? [] }

  func double(_ name: String) throws(UsageError) -> Double? {
    guard let text = try value(name) else { return nil }
    guard let d = parseDuration(text) else {
      throw UsageError(message: "\(name) must be a number of seconds (e.g. 1, 0.5, 2s, 500ms), got '\(text)'", command: command)
    }
    return d
  }

  func int(_ name: String) throws(UsageError) -> Int? {
    guard let text = try value(name) else { return nil }
    guard let n = Int(text), n >= 0 else { throw UsageError(message: "\(name) must be a whole number ≥ 0, got '\(text)'", command: command) }
    return n
  }
}

/// "1", "1s", "500ms", "2m" → seconds.
func parseDuration(_ text: String) -> Double? {
  let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
  for (suffix, scale) in units where text.hasSuffix(suffix) {
    if let d = Double(text.dropLast(suffix.count)), d > 0 { return d * scale }
  }
  if let d = Double(text), d > 0 { return d }
  return nil
}

/// Diagnostics go to stderr, unbuffered; data goes to stdout.
func printError(_ text: String) {
  FileHandle.standardError.write((text + "\n").data(using: .utf8)!)
}

/// An error as diagnostics: each of its lines (a policy's several issues) its
/// own `error:` line, as compilers print several.
func printErrors(_ error: Error) {
  for line in "\(error)".split(separator: "\n") { printError("error: \(line)") }
}
