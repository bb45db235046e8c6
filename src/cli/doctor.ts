/**
 * `lanplug doctor`: what this host can do and what is wrong with lanplug on
 * it, one line per check (✔ fine, ⚠ a limit worth knowing, ✘ broken) with
 * the command that fixes it. Exit status 1 when anything is broken.
 *
 * Read-only: the kernel is probed in a throw-away namespace, the store is
 * opened read-only, and what `lanplug gc` would do is computed, not done.
 *
 * Each area has its file under cli/doctor/: kernel, docker (dockerd and the
 * driver sockets), daemon-health (the running daemon's /healthz), cni, netavark (Podman 5
 * and 6), state
 * (the directory, the database, and what its records say of the host and the
 * LAN); shared pools are cli/shared-pools.ts.
 */
import { ControlClient, NotAskedError } from './control-client';
import type { Add, Check, CheckStatus, DoctorOptions } from './doctor/check';
import { cniChecks } from './doctor/cni';
import { daemonHealthChecks } from './doctor/daemon-health';
import { dockerChecks, socketChecks } from './doctor/docker';
import { kernelChecks } from './doctor/kernel';
import { netavarkChecks } from './doctor/netavark';
import { askSyncFailure, stateChecks } from './doctor/state';
import { askSharedPools, sharedPoolChecks } from './shared-pools';

export type { Check, CheckStatus, DoctorOptions } from './doctor/check';

/**
 * `control`: how the daemon's control socket is asked, one client for the whole run (a daemon that
 * did not answer one ask is not asked the others: a hung one costs one timeout, not one per ask).
 */
export async function runDoctor(
  options: DoctorOptions,
  control = new ControlClient(options.stateDir),
): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (check: string, status: CheckStatus, detail: string, fix?: string): void => {
    checks.push({ check, status, detail, ...(fix === undefined ? {} : { fix }) });
  };
  if (process.getuid?.() !== 0)
    add(
      'root',
      'fail',
      'not running as root: links, namespaces and the plugin directory need it',
      'sudo lanplug doctor',
    );
  kernelChecks(add);
  await dockerChecks(options, add);
  await socketChecks(options, add);
  await daemonHealthChecks(options, add, control);
  await cniChecks(options, add);
  await netavarkChecks(options, add);
  stateChecks(options, add, await askSyncFailure(control));
  await sharedChecks(control, add);
  return checks;
}

/** Only where the daemon runs with --store etcd://...: etcd and this host's part of the shared pools. */
async function sharedChecks(control: ControlClient, add: Add): Promise<void> {
  try {
    const report = await askSharedPools(control);
    if (report !== null) sharedPoolChecks(report, add);
  } catch (err) {
    if (err instanceof NotAskedError) add('shared pools', 'warn', err.message);
    else add('shared pools', 'fail', err instanceof Error ? err.message : String(err));
  }
}

const MARK: Record<CheckStatus, string> = { ok: '✔', warn: '⚠', fail: '✘' };

export function formatChecks(checks: readonly Check[]): string {
  return (
    checks
      .map((c) => `${MARK[c.status]} ${c.check}: ${c.detail}${c.fix === undefined ? '' : ` — fix: ${c.fix}`}`)
      .join('\n') + '\n'
  );
}
