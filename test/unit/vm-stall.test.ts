// The full-kernel lane's stall detector (test/vm/qemu.ts): it must read the guest kernel's own
// watchdog lines, as CI printed them the day a TCG guest hung, and nothing else.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { longestSoftLockup, STALL_KILL_SECONDS } from '../vm/qemu';

const HUNG_CONSOLE = `[  414.285122] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[  414.285122] rcu: rcu_preempt kthread starved for 99797 jiffies! g3781 f0x2 RCU_GP_WAIT_FQS(5) ->state=0x0 ->cpu=1
[  440.535828] watchdog: BUG: soft lockup - CPU#1 stuck for 399s! [runc:330]
[  468.535762] watchdog: BUG: soft lockup - CPU#1 stuck for 425s! [runc:330]
`;

test('a guest CPU its kernel reports stuck for minutes is a stall; the longest report counts', () => {
  assert.equal(longestSoftLockup(HUNG_CONSOLE), 425);
  assert.ok(longestSoftLockup(HUNG_CONSOLE) >= STALL_KILL_SECONDS);
});

test('a short lockup, an RCU note alone or a script printing the words is not a stall', () => {
  assert.equal(longestSoftLockup('[ 30.1] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [dockerd:210]\n'), 23);
  assert.ok(longestSoftLockup('[ 30.1] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [x:1]') < STALL_KILL_SECONDS);
  assert.equal(longestSoftLockup('[ 12.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n'), 0);
  assert.equal(longestSoftLockup('OK vlan\nsoft lockup\nstuck for 400s\n'), 0);
});
