import Foundation
import Testing
import VFShiftCore
import VFShiftAgent
import VFShiftLibvirt
import VFShiftTestSupport

/// The swap breaks the old path only once the guest uses the new NIC.
@Suite("swaps confirmed by the guest", .serialized, .enabled(if: TestBed.enabled))
struct GuestConfirmTests {
  /// Runs `command` in the guest through its QEMU guest agent (guest-exec), as an
  /// operator's configuration management would; waits for it to finish.
  @discardableResult
  func inGuest(_ guest: String, _ command: String) throws -> String {
    let args = #"{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","\#(command)"],"capture-output":true}}"#
    let reply = try virsh("qemu-agent-command", guest, args)
    let pid = try #require(((try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])?["return"] as? [String: Any])?["pid"] as? Int)
    var output = ""
    try TestBed.waitUntil(deadlineSeconds: 10, "guest-exec in \(guest) exited") {
      let status = try virsh("qemu-agent-command", guest, #"{"execute":"guest-exec-status","arguments":{"pid":\#(pid)}}"#)
      guard let r = (try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])?["return"] as? [String: Any],
            r["exited"] as? Bool == true else { return false }
      output = (r["out-data"] as? String).flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) } ?? ""
      return true
    }
    return output
  }

  @Test("a promotion keeps the virtio NIC's MAC and proceeds once the guest agent shows the new NIC addressed")
  func sameMACConfirmed() async throws {
    let (bed, lease) = try leasedBed()
    defer { withExtendedLifetime(lease) {}; try? resetAllGuests(bed) }
    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    let scratch = Scratch("confirm")
    let agent = try await startedAgent(scratch, policy: bedPolicy())
    defer { _ = agent.stop() }
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: 5e6)
    defer { traffic.stop() }
    try await agent.waitFor("vfs-g3 promoted", seconds: 45) { agent.swaps.contains { $0 == ("promote", "vfs-g3", "done") } }
    let vf = try #require(try liveInventory("vfs-g3").nics.first)
    #expect(vf.poolNetwork == "vfs-pool")
    #expect(vf.mac == g3.mac, "the VF carries the virtio NIC's MAC (pool mac: same)")
    let confirmed = agent.events("swap-step").first { $0["vm"] as? String == "vfs-g3" && $0["step"] as? String == "guest-uses-new" }
    #expect((confirmed?["by"] as? String)?.hasPrefix("guest agent: eth") == true, "\(String(describing: confirmed))")
  }

  @Test("a guest that never brings the new NIC up: the swap rolls back, the VM keeps its virtio NIC and address, and is held off, across an agent restart, until a swap works")
  func guestWithoutDriverRollsBack() async throws {
    let (bed, lease) = try leasedBed()
    defer { withExtendedLifetime(lease) {} }
    let g3 = try #require(bed.guests.first { $0.name == "vfs-g3" })
    // The guest's kernel binds no network driver to a virtio device that
    // appears from now on (the virtio bus's autoprobe; the PCI bus's is
    // bypassed by PCI hot-plug): the new NIC arrives and the guest never
    // uses it, as with a missing driver.
    #expect(try inGuest("vfs-g3", "echo 0 > /sys/bus/virtio/drivers_autoprobe; cat /sys/bus/virtio/drivers_autoprobe") == "0\n")
    defer {
      try? inGuest("vfs-g3", "echo 1 > /sys/bus/virtio/drivers_autoprobe")
      try? resetAllGuests(bed)
    }
    let before = try liveInventory("vfs-g3")
    let scratch = Scratch("rollback")
    let ping = try PingMonitor(guest: g3.name, ip: g3.ip, scratch: scratch)
    defer { ping.stop() }
    let policy = bedPolicy().replacingOccurrences(of: "maxInUse: 1 }", with: "maxInUse: 1, confirmSeconds: 3 }")
    let agent = try await startedAgent(scratch, policy: policy)
    defer { _ = agent.stop() }
    let traffic = try TrafficSource(to: g3.ip, bytesPerSecond: 5e6)
    defer { traffic.stop() }
    do {
      try await agent.waitFor("vfs-g3's promotion rolled back", seconds: 60) {
        agent.swaps.contains { $0 == ("promote", "vfs-g3", "not-taken") }
      }
    } catch {
      Issue.record("\(error)\nagent log:\n\(agent.tail(40))")
      return
    }
    let steps = agent.events("swap-step").filter { $0["vm"] as? String == "vfs-g3" }.compactMap { $0["step"] as? String }
    // The virtio NIC's port redirects the DHCP replies from the attach, and stops before the rollback ends.
    #expect(Array(steps.prefix(6)) == ["journal", "attached", "dhcp-redirected", "guest-not-using-new", "dhcp-redirect-removed", "rolled-back"],
            "\(steps)")
    #expect(!steps.contains("detach-requested"), "the virtio NIC was never asked to go: \(steps)")
    let after = try liveInventory("vfs-g3")
    #expect(after.nics == before.nics, "the VM has exactly its virtio NIC again")
    #expect(after.journal == nil)
    // Held off by the engine, with the reason, not retried every cycle.
    func heldForRefusal(_ agent: AgentProcess, _ what: String) async -> Bool {
      do {
        try await agent.waitFor(what, seconds: 20) {
          agent.events("decision").contains {
            $0["vm"] as? String == "vfs-g3" && $0["decision"] as? String == "hold" && $0["rule"] as? String == "guest-refused"
          }
        }
        return true
      } catch {
        Issue.record("\(error)\nagent log:\n\(agent.tail(12))")
        return false
      }
    }
    guard await heldForRefusal(agent, "vfs-g3 held: the guest did not take its NIC") else { return }
    #expect(agent.swaps.filter { $0.1 == "vfs-g3" }.count == 1)
    // The refusal is kept in the domain: a restarted agent holds the VM too,
    // rather than trying again once the traffic has been measured.
    let kept = try #require(try liveInventory("vfs-g3").refusal, "the refusal is in the domain's metadata")
    let wallNow = Int64(Date().timeIntervalSince1970 * 1000)
    #expect(kept.times == 1)
    #expect(kept.untilUnixMilliseconds > wallNow && kept.untilUnixMilliseconds <= wallNow + 30_000, "\(kept), now \(wallNow)")
    #expect(agent.stop() == 0)
    let restarted = try await startedAgent(Scratch("rollback-restarted"), policy: policy)
    defer { _ = restarted.stop() }
    guard await heldForRefusal(restarted, "the restarted agent holds vfs-g3 for the guest's refusal") else { return }
    #expect(!restarted.swaps.contains { $0.1 == "vfs-g3" }, "the restarted agent did not try vfs-g3 again")
    // The guest takes new NICs again: after the hold, the swap that works clears the record.
    try inGuest("vfs-g3", "echo 1 > /sys/bus/virtio/drivers_autoprobe")
    try await restarted.waitFor("vfs-g3 promoted once its hold is over", seconds: 60) {
      restarted.swaps.contains { $0 == ("promote", "vfs-g3", "done") }
    }
    #expect(try liveInventory("vfs-g3").refusal == nil, "the swap that worked cleared the refusal record")
    let r = TestBed.ping(g3.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2)
    #expect(r.received == r.sent, "the guest answers on its address")
  }
}
