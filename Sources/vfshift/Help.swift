func help(for command: String) -> String? {
  switch command {
  case "whatif": """
    OVERVIEW: Replay a traffic trace through one or more policies and compare them
    side by side — swaps, flaps, VF occupancy, time to promote, the share of each
    class's traffic carried on VFs — against an oracle that knows the future and
    swaps for free under the same caps (the upper bound).

    USAGE: \(usageLine(command))

    OPTIONS:
      --trace PATH     A vfshift trace file, or a directory of GWA-T-12 <vm>.csv
                       files as published (told apart by content). Default: the
                       bundled extract of the public Bitbrains trace.
      --policy FILE    A policy file; repeat to compare. Default: every bundled policy.
      --vfs N          VFs per pool where the trace does not record it (default 8).
      --json           Print one JSON object instead of the table.
      --report FILE    Also write a self-contained HTML page: per policy, which VM
                       held each VF over time beside the oracle's choice, each
                       VM's traffic (busiest first), the swaps, and the table.
      -h, --help       Show this help.

    A progress line goes to stderr on long replays; results go to stdout.
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
      -h, --help           Show this help.
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
