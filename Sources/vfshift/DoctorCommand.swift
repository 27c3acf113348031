import VFShiftAgent
import VFShiftCore
import VFShiftHost

let doctorHelp = """
  OVERVIEW: Check that this host is ready for 'vfshift run', in the spirit of
  libvirt's virt-host-validate: one line per check, PASS, WARN or FAIL, and
  under each WARN and FAIL what to do.

  USAGE: vfshift doctor [--policy FILE] [--connect URI] [--unit FILE] [--json]

  Checks: the policy parses; libvirt is installed and reachable at the URI;
  each pool's network exists and hands out VFs (a hostdev pool with its PF, or
  a passthrough stand-in); the PF in sysfs with SR-IOV enabled, its VFs
  present and bound; IOMMU groups; per managed VM its data NIC (with an alias),
  its guest agent answering, the failover pair where the pool's mode is
  failover; CAP_NET_ADMIN, the runtime directory and the installed unit's
  sandbox.

  OPTIONS:
    --policy FILE   The policy the agent runs (default /etc/vfshift/policy.json).
    --connect URI   libvirt URI (default qemu:///system).
    --unit FILE     The installed unit (default /etc/systemd/system/vfshift.service).
    --sysfs DIR     Where sysfs is (default /sys; for tests).
    --json          One JSON object: ready, failed, warned, checks[].

  Exit status: 0 when nothing FAILs (WARNs allowed), 1 otherwise, 64 usage.
  """

func doctorCommand(_ argv: [String]) async throws -> ExitCode {
  let args = try Arguments(argv, command: "doctor", valued: ["--policy", "--connect", "--unit", "--sysfs"], flags: ["--json"])
  guard args.positionals.isEmpty else { throw UsageError(message: "unexpected argument '\(args.positionals[0])'", command: "doctor") }
  var o = DoctorOptions()
  o.policyPath = try args.value("--policy") ?? o.policyPath
  o.uri = try args.value("--connect") ?? o.uri
  o.unitPath = try args.value("--unit") ?? o.unitPath
  if let sysfs = try args.value("--sysfs") { o.sysfs = SysfsRoot(sysfs) }
  let report = await doctor(o)
  print(args.flags.contains("--json") ? report.json() : report.text(), terminator: "")
  return report.ready ? .ok : .failure
}
