func agentHelp(for command: String) -> String? { nil }

func agentCommand(_ command: String, _ argv: [String]) async throws -> ExitCode {
  printError("error: '\(command)' is not built yet")
  return .failure
}
