/**
 * The full-kernel lane: boots Debian's stock kernel under qemu (see README.md here)
 * and runs, inside it, the tests that need what this machine's kernel lacks
 * (8021q, ipvlan, dummy): the kernel lane again, and the Docker tests in
 * test/vm/inside/ against a real dockerd in the VM. The inner run's report
 * is echoed on stderr; its verdict is this test's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { busyboxRootfsTar } from '../lab/image';
import { runInVm } from './run';

/** Inner tests that must have run: a run that silently lost files must not pass. */
const MIN_INNER_TESTS = 20;

test("the kernel lane and the VM-only Docker tests pass on Debian's kernel", { timeout: 30 * 60_000 }, async () => {
  // The VM sees the repository read-only: the image tarball must exist before boot.
  busyboxRootfsTar();
  const result = await runInVm({
    script: [
      'cd "$LANPLUG_REPO"',
      // The kernel lane's timing test is left out under emulation (lan-watch.test.ts).
      'LANPLUG_EMULATED=1 node --test --test-concurrency=1 dist/test/kernel/*.test.js dist/test/vm/inside/*.test.js',
    ].join('\n'),
    timeoutMs: 25 * 60_000,
    memoryMb: 3072,
  });
  process.stderr.write(result.output.replace(/^/gm, 'vm| ') + '\n');
  process.stderr.write(
    `vm| boot ${(result.bootMs / 1000).toFixed(1)} s, whole run ${(result.wallMs / 1000).toFixed(1)} s\n`,
  );
  const passed = Number(/^# pass (\d+)$/m.exec(result.output)?.[1] ?? NaN);
  const failed = Number(/^# fail (\d+)$/m.exec(result.output)?.[1] ?? NaN);
  const failures = result.output.split('\n').filter((l) => /^\s*not ok /.test(l));
  assert.deepEqual(failures, [], 'inner tests failed (see the vm| lines above)');
  assert.equal(failed, 0, 'inner run reported failures');
  assert.ok(passed >= MIN_INNER_TESTS, `only ${passed} inner tests passed; expected at least ${MIN_INNER_TESTS}`);
  assert.equal(result.exitCode, 0, 'inner test run exit status');
});
