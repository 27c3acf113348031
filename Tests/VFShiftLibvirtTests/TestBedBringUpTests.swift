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
    // Other suites swap NICs and pause guests in parallel with this one, so a
    // guest gets until the deadline to answer 3 pings of 3 in one go.
    for guest in bed.guests {
      var last = (sent: 0, received: 0)
      try TestBed.waitUntil(deadlineSeconds: 60, poll: 0.5,
                            "\(guest.name) at \(guest.ip) answers 3 of 3 pings from \(bed.namespace)") {
        last = TestBed.ping(guest.ip, from: bed.namespace, count: 3, intervalSeconds: 0.2)
        return last.sent == 3 && last.received == 3
      }
      #expect(last.received == 3, "\(guest.name): \(last.received) of \(last.sent)")
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
      #expect(xml.contains("<mac address='\(guest.managementMAC ?? "-")'/>") && xml.contains("<alias name='\(guest.managementAlias ?? "-")'/>")
              && xml.contains("<source bridge='\(bed.managementBridge ?? "-")'/>"), "\(guest.name): management NIC")
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
