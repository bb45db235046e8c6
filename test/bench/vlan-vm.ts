/**
 * VLAN parents at scale (`npm run bench -- --scale`): this machine's kernel
 * has no 8021q, so the scale bench's curves code runs in the full-kernel VM
 * (test/vm: Debian's kernel under qemu, TCG), twice at a small count: one
 * network on a veth parent, then one on a VLAN of a veth made by lanplug
 * (`-o parent=sp0.10`). Under emulation every figure is several times the
 * host's: only the two rows beside each other say what a VLAN parent
 * changes.
 *
 * Run as a script (inside the VM): prints the two runs' points as JSON on
 * its last line.
 */
import { runInVm } from '../vm/run';
import { scaleCurves, type ScalePoint } from './scale';
import { Results } from './stats';

/** Small: the VM emulates its CPUs (TCG) on the two shared cores. */
const VM_OPTIONS = { networks: [1], levels: [0, 200], cycles: 50, idleWindowMs: 2_000 } as const;
const VLAN_ID = 10;

async function inside(): Promise<void> {
  const veth = await scaleCurves(new Results(), VM_OPTIONS);
  const vlan = await scaleCurves(new Results(), { ...VM_OPTIONS, vlanId: VLAN_ID });
  process.stdout.write(`\n${JSON.stringify([...veth.points, ...vlan.points])}\n`);
}

/** Boots the VM and runs the two there; the points, or the reason there are none. */
export async function vlanParentsInVm(): Promise<{ points: ScalePoint[]; vmMs: number } | { error: string }> {
  try {
    const result = await runInVm({
      script: ['cd "$LANPLUG_REPO"', 'node dist/test/bench/vlan-vm.js'].join('\n'),
      timeoutMs: 15 * 60_000,
      memoryMb: 3072,
    });
    const last = result.output.trim().split('\n').pop() ?? '';
    if (result.exitCode !== 0 || !last.startsWith('['))
      return { error: `the VM run failed (exit ${result.exitCode}): ${result.output.trim().slice(-2000)}` };
    return { points: JSON.parse(last) as ScalePoint[], vmMs: result.wallMs };
  } catch (err) {
    return { error: String(err) };
  }
}

if (require.main === module)
  inside().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
