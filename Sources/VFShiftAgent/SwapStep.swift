/// The steps a swap logs (`swap-step` events, field `step`) and the fault
/// tests stop or kill the agent at. One list, so a test naming a step that no
/// longer exists fails to compile instead of waiting for a step never taken.
public enum SwapStep: String, Sendable, CaseIterable {
  case refused
  case journal
  case journalFailed = "journal-failed"
  case attached
  case attachFailed = "attach-failed"
  case guestUsesNew = "guest-uses-new"
  case guestNotUsingNew = "guest-not-using-new"
  case memberUpFailed = "member-up-failed"
  case rolledBack = "rolled-back"
  case rollbackPending = "rollback-pending"
  case detachRequested = "detach-requested"
  case detachPending = "detach-pending"
  case done
  case reconcile
  /// From the attach on, the DHCP server's replies that would leave by the
  /// old NIC's bridge port go to the new NIC's port (SwitchOver.swift).
  case dhcpRedirected = "dhcp-redirected"
  /// From the attach on, the old port does not learn the guest's MAC: where
  /// the redirect cannot be had, or VFSHIFT_SWITCHOVER=quiet (`steered`
  /// includes the same at the confirmation).
  case learningOff = "learning-off"
  /// The bridge forwards the guest's MAC to the new NIC's port, the old port no longer learns it.
  case steered
  case steerSkipped = "steer-skipped"
  case steerFailed = "steer-failed"
  case learningRestored = "learning-restored"
  case dhcpRedirectRemoved = "dhcp-redirect-removed"
  /// A real VF's MAC cleared on its PF after the demotion (net_failover.rst).
  case pfMACCleared = "pf-mac-cleared"
  case pfMACSkipped = "pf-mac-skipped"
}
