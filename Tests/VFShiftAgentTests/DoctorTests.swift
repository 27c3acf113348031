import Foundation
import Testing
import VFShiftTestSupport

/// `vfshift doctor` on the real bed, run as an operator runs it.
@Suite("doctor on the test bed", .serialized)
struct DoctorTests {
  func doctor(_ arguments: [String]) throws -> TestBed.Output {
    try TestBed.execute([vfshiftBinary, "doctor"] + arguments)
  }

  @Test("the bed's policy: libvirt, the stand-in pool and every managed VM's data NIC pass; exit 0", .enabled(if: TestBed.enabled))
  func bedIsReady() throws {
    let bed = try TestBed.require()
    let scratch = Scratch("doctor")
    try bedPolicy().write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
    let r = try doctor(["--policy", scratch.file("p.json"), "--unit", TestBed.packageRoot.appendingPathComponent("deploy/vfshift.service").path])
    #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    let lines = r.stdout.split(separator: "\n").map(String.init)
    #expect(lines.contains { $0.hasPrefix("PASS  libvirt: reachable at qemu:///system") })
    #expect(lines.contains { $0.hasPrefix("PASS  pool vfs: network \(bed.poolNetwork) — passthrough stand-in for a VF pool: \(bed.poolMembers.count) member(s)") })
    #expect(lines.contains { $0.hasPrefix("WARN  pool vfs: SR-IOV") }, "a stand-in is said to be one")
    for guest in bed.guests where guest.label != nil {
      #expect(lines.contains { $0.hasPrefix("PASS  vm \(guest.name): data NIC — class \(guest.label!), \(guest.mac)") }, "\(guest.name)")
      #expect(lines.contains { $0 == "PASS  vm \(guest.name): guest agent — answers guest-ping" }, "\(guest.name)")
    }
    #expect(!lines.contains { $0.contains("vm vfs-u1") }, "an unmanaged VM is not checked")
    #expect(lines.last?.hasSuffix("— ready") == true)
  }

  @Test("a pool whose network does not exist FAILs with what to do; --json says so too; exit 1", .enabled(if: TestBed.enabled))
  func missingNetworkFails() throws {
    _ = try TestBed.require()
    let scratch = Scratch("doctor-bad")
    try bedPolicy().replacingOccurrences(of: "network: \"vfs-pool\"", with: "network: \"no-such-pool\"")
      .write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
    let r = try doctor(["--policy", scratch.file("p.json")])
    #expect(r.status == 1)
    let lines = r.stdout.split(separator: "\n").map(String.init)
    let i = try #require(lines.firstIndex { $0.hasPrefix("FAIL  pool vfs: network no-such-pool") }, "\(r.stdout)")
    #expect(lines[i + 1].hasPrefix("      fix: define and start a <forward mode='hostdev'> network named no-such-pool"))
    let json = try doctor(["--policy", scratch.file("p.json"), "--json"])
    #expect(json.status == 1)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    #expect(object["ready"] as? Bool == false)
    let checks = try #require(object["checks"] as? [[String: Any]])
    #expect(checks.contains { $0["status"] as? String == "FAIL" && ($0["check"] as? String)?.contains("no-such-pool") == true })
  }

  @Test("a policy that does not parse FAILs naming the file, and the rest still runs", .enabled(if: TestBed.enabled))
  func badPolicy() throws {
    _ = try TestBed.require()
    let scratch = Scratch("doctor-policy")
    try "{ name: \"x\", pools: [ }".write(toFile: scratch.file("p.json"), atomically: true, encoding: .utf8)
    let r = try doctor(["--policy", scratch.file("p.json")])
    #expect(r.status == 1)
    #expect(r.stdout.hasPrefix("FAIL  policy: \(scratch.file("p.json")) — \(scratch.file("p.json"))"), "\(r.stdout)")
    #expect(r.stdout.contains("PASS  libvirt: reachable at qemu:///system"))
  }
}
