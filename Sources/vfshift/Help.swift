func help(for command: String) -> String? {
  switch command {
  case "doctor": doctorHelp
  case "whatif": """
    OVERVIEW: Replay a traffic trace through one or more policies and compare them
    side by side — swaps, flaps, VF occupancy, time to promote, the share of each
    class's traffic carried on VFs — against an oracle that knows the future and
    swaps for free under the same caps (the upper bound).

    USAGE: \(usageLine(command))

    OPTIONS:
      --trace PATH     A vfshift trace file, or a directory of GWA-T-12 <vm>.csv
                       files as published (told apart by content). Default: the
                       bundled extract of the public Bitbrains trace. Repeat for
                       GWA-T-12 directories split by time (a VM's files of one
                       name are its rows in time order).
      --policy FILE    A policy file; repeat to compare. Default: every bundled policy.
      --vfs N          VFs per pool where the trace does not record it (default 8).
      --host-cores N   GWA-T-12 input only: estimate each sample's CPU contention
                       as if the VMs shared a host of N cores (a model, not a
                       measurement: see 'trace import --help').
      --json           Print one JSON object instead of the table.
      --strict         A file that gives no VM (no rows, not GWA-T-12, unreadable,
                       not a regular file) is an error, not a warning.
      --report FILE    Also write a self-contained HTML page: per policy, which VM
                       held each VF over time beside the oracle's choice, each
                       VM's traffic (busiest first), the swaps, and the table.
      -h, --help       Show this help.

    The table's first lines account for the input: files found, VMs imported,
    every file left out and why (JSON: "inputs"). "weighted by CPU contention"
    is the share of eligible bytes on a VF with each byte weighted by its VM's
    contention; "—" (JSON null) when the trace carries none. Warnings, and a progress line
    on long replays, go to stderr; results go to stdout.
    Exit status: 0 done, 1 a file is invalid (the error names file, line, field), 64 usage.
    """
  case "policy check": """
    OVERVIEW: Validate policy files. Every problem is printed as FILE:LINE: FIELD: REASON.

    USAGE: \(usageLine(command))

    Exit status: 0 all valid, 1 some file invalid, 64 usage.
    """
  case "trace import": """
    OVERVIEW: Convert a directory of GWA-T-12 ("Bitbrains") per-VM CSV files, as
    published by the Grid Workloads Archive, into a vfshift trace.

    USAGE: \(usageLine(command))

    OPTIONS:
      --out FILE           Where to write the trace (required; '-' for stdout).
      --vms LIST           Comma-separated file stems to keep (default: all).
      --rename OLD=NEW     Give VM OLD the name NEW (repeatable).
      --label VM=LABEL     Give VM the QoS label LABEL, as libvirt metadata would (repeatable).
      --host-cores N       Give each sample a CPU contention estimated from the VMs'
                           CPU use, as if they all ran on one host of N cores:
                           demand D = the sum of cores x CPU usage % of the VMs'
                           rows in the cycle, contention = max(0, D - N) / D.
                           A model, not a measurement (the archive's VMs ran on
                           other hosts, and their usage is what they got, not
                           what they asked for). Writes a version-2 trace.
      --strict             A file that gives no VM is an error, not a warning.
      -h, --help           Show this help.

    Several directories are one VM set: files of one name are one VM's rows
    split by time. What was read (files found, VMs imported, every file left
    out and why) and warnings go to stderr.
    Exit status: 0 done, 1 a file is invalid (or, with --strict, left out), 64 usage.
    """
  case "trace scenario": """
    OVERVIEW: Write the paper's scenario — 8 VMs, VMs 1–5 low QoS, 6–8 high QoS,
    iperf-like bursts at a 1 s interval — as a trace. Deterministic per seed.

    USAGE: \(usageLine(command))

    OPTIONS:
      --out FILE      Where to write it (required; '-' for stdout).
      --seconds N     Length of the trace (default 3600).
      --seed N        Seed (default 2022).
    """
  default: agentHelp(for: command)
  }
}
