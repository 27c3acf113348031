import Foundation
import Testing
import VFShiftTestSupport

/// The test bed itself, brought up by the test run (deploy/testbed/up): what
/// the other test-bed suites stand on. Fails in CI when the bed cannot come up;
/// skips locally with the reason on stderr.
@Suite struct TestBedBringUpTests {
  @Test(.enabled(if: TestBed.enabled))
  func everyGuestAnswersPingFromTheNamespace() throws {
    let bed = try TestBed.require()
    try #require(!bed.guests.isEmpty, "state.json lists no guests")
    for guest in bed.guests {
      let r = TestBed.ping(guest.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2)
      #expect(r.sent == 3 && r.received == 3,
              "\(guest.name) at \(guest.ip): \(r.received) of \(r.sent) pings answered from \(bed.namespace)")
    }
  }

  /// state.json is what the other suites trust: check it against libvirt.
  @Test(.enabled(if: TestBed.enabled))
  func stateFileAgreesWithLibvirt() throws {
    let bed = try TestBed.require()
    let running = try TestBed.run(["virsh", "-q", "-c", "qemu:///system", "list", "--name"])
      .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    for guest in bed.guests {
      #expect(running.contains(guest.name), "\(guest.name) is running")
      let uuid = try TestBed.run(["virsh", "-q", "-c", "qemu:///system", "domuuid", guest.name])
        .trimmingCharacters(in: .whitespacesAndNewlines)
      #expect(uuid == guest.uuid, "\(guest.name): uuid")
      let xml = try TestBed.run(["virsh", "-c", "qemu:///system", "dumpxml", "--inactive", guest.name])
      #expect(xml.contains("<domain type='qemu'"), "\(guest.name): TCG, never KVM")
      #expect(xml.contains("<mac address='\(guest.mac)'/>"), "\(guest.name): MAC of ua-net0")
      #expect(xml.contains("<alias name='ua-net0'/>"), "\(guest.name): user alias")
      let labelled = xml.contains("https://vfshift.dev/ns/qos/1")
      if let label = guest.label {
        #expect(labelled && xml.contains("class=\"\(label)\""), "\(guest.name): QoS label \(label) in metadata")
      } else {
        #expect(!labelled, "\(guest.name): unmanaged, no QoS metadata")
      }
    }
    let pool = try TestBed.run(["virsh", "-c", "qemu:///system", "net-dumpxml", bed.poolNetwork])
    #expect(pool.contains("mode='passthrough'"))
    for member in bed.poolMembers {
      #expect(pool.contains("<interface dev='\(member)'"), "\(member) in \(bed.poolNetwork)")
    }
  }
}
