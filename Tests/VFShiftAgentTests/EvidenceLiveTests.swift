import Foundation
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftLibvirt
import VFShiftTestSupport

/// Issue 11 live: the bed's pool measured as a real VF is — through the
/// guest's QEMU agent, never the stand-in's host netdev — and no move without
/// evidence, across the agent's own restart.
@Suite("measured on the VF as real hardware allows; no evidence, no move", .serialized, .enabled(if: TestBed.enabled))
struct EvidenceLiveTests {
  /// The bed's policy with the pool read through the guest agent.
  static let policy = bedPolicy().replacingOccurrences(of: "maxInUse: 1 }", with: "maxInUse: 1, counters: \"guestAgent\" }")
  static let demoteSustain = 5.0, interval = 1.0, paced = 3e6

  /// `vfshift status --json` as an operator asks it (the agent's control socket).
  func status(_ scratch: Scratch) -> [String: Any]? {
    guard let r = try? TestBed.execute([vfshiftBinary, "status", "--json", "--status-file", scratch.file("status.json")]),
          r.status == 0 else { return nil }
    return try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
  }

  func row(_ s: [String: Any]?, _ vm: String) -> [String: Any]? {
    (s?["vms"] as? [[String: Any]])?.first { $0["vm"] as? String == vm }
  }

  @Test("promoted on its traffic; on the VF its rate comes from the guest agent, within 20 % of the paced rate; demoted within sustain + 3 cycles of the traffic stopping")
  func guestAgentMeasuresTheVF() async throws {
    let (bed, lease) = try leasedBed()
    defer { withExtendedLifetime(lease) {}; try? resetAllGuests(bed) }
    #expect(Self.policy.contains("counters: \"guestAgent\""))
    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    let scratch = Scratch("evidence-ga")
    let agent = try await startedAgent(scratch, policy: Self.policy)
    defer { _ = agent.stop() }
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: Self.paced)
    defer { traffic.stop() }
    try await agent.waitFor("vfs-g3 promoted", seconds: 45) { agent.swaps.contains { $0 == ("promote", "vfs-g3", "done") } }
    let promotedAt = Date()

    var seen: [String: Any]?
    try await agent.waitFor("status shows vfs-g3 measured by the guest agent near the paced rate", seconds: 30) {
      seen = self.row(self.status(scratch), "vfs-g3")
      guard seen?["counterSource"] as? String == "guestAgent", let rate = seen?["bytesPerSecond"] as? Double else { return false }
      return abs(rate - Self.paced) <= 0.2 * Self.paced
    }
    #expect(seen?["placement"] as? String == "vf:vfs")

    // Past the dwell, the traffic stops: demoted within sustain + 3 cycles.
    try await agent.waitFor("vfs-g3's dwell over", seconds: 30) { Date().timeIntervalSince(promotedAt) > 11 }
    traffic.stop()
    let stoppedAt = Date().timeIntervalSince1970
    try await agent.waitFor("vfs-g3 demoted", seconds: 40) { agent.swaps.contains { $0 == ("demote", "vfs-g3", "done") } }
    let decided = try #require(agent.events("decision").first { $0["vm"] as? String == "vfs-g3" && $0["decision"] as? String == "demote" })
    let after = try #require(unixTime(decided["ts"])) - stoppedAt
    #expect(after <= Self.demoteSustain + 3 * Self.interval, "demote decided \(after) s after the traffic stopped")
  }

  @Test("SIGKILLed and restarted while its guest streams: the guest keeps its VF through a whole demote sustain; when the traffic stops, it is demoted")
  func restartKeepsTheVF() async throws {
    let (bed, lease) = try leasedBed()
    defer { withExtendedLifetime(lease) {}; try? resetAllGuests(bed) }
    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    let scratch = Scratch("evidence-restart")
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: Self.paced)
    defer { traffic.stop() }
    let first = try await startedAgent(scratch, policy: Self.policy)
    try await first.waitFor("vfs-g3 promoted", seconds: 45) { first.swaps.contains { $0 == ("promote", "vfs-g3", "done") } }
    #expect(first.stop(signal: SIGKILL) == SIGKILL)

    let second = try await startedAgent(scratch, policy: Self.policy, logName: "agent2.log")
    defer { _ = second.stop() }
    // A whole demote sustain and 3 cycles more, by the agent's own cycle count.
    let cycles = Int(Self.demoteSustain / Self.interval) + 3
    try await second.waitFor("\(cycles) cycles of the restarted agent", seconds: 40) {
      (self.status(scratch)?["cycle"] as? Int ?? 0) >= cycles
    }
    #expect(!second.swaps.contains { $0.vm == "vfs-g3" }, "no swap of vfs-g3 after the restart: \(second.swaps)")
    #expect(!second.decisions.contains { $0.vm == "vfs-g3" && $0.verb == "demote" })
    #expect(try liveInventory("vfs-g3").nics.first?.poolNetwork == "vfs-pool", "still on its VF")

    traffic.stop()
    try await second.waitFor("vfs-g3 demoted once its traffic stopped", seconds: 60) {
      second.swaps.contains { $0 == ("demote", "vfs-g3", "done") }
    }
  }
}
