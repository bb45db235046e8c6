/**
 * `lanplug install` / `lanplug uninstall`: the systemd units, enabled the way
 * `systemctl enable` does it (a symlink in the target's .wants directory), so
 * that install works the same on a running host, in a chroot and in a test
 * root. On a host where systemd runs, the units are then loaded and started.
 * Uninstall removes exactly what install wrote: files that carry install's
 * marker line, and symlinks that point at them.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { LanplugError } from '../errors';
import { installCniExecutables, uninstallCniExecutables } from '../install/cni';
import { installNetavarkPlugins, uninstallNetavarkPlugins } from '../install/netavark';
import { MARKER, SERVICE, SOCKET_UNITS, unitFiles, type UnitSettings } from '../install/units';
import type { StoreChoice } from '../state/etcd/store-option';
import { prepareStateDir } from '../state/state-dir';

export const UNIT_DIR = '/etc/systemd/system';

export interface InstallOptions {
  root: string;
  dryRun: boolean;
  settings: UnitSettings;
  /** Also the CNI plugins, built for the daemon's CNI socket. */
  cni: { packageRoot: string; socket: string } | null;
  /** Also the netavark plugins (Podman 5 and 6), built for the same socket. */
  netavark?: { packageRoot: string; socket: string } | null;
}

/** Writes and enables the units (and the CNI and netavark plugins); returns what it did (or, with dryRun, would do), one line each. */
export function install(options: InstallOptions): string[] {
  // Every check before anything is written: the units' settings, then units that are not ours.
  const units = unitFiles(options.settings);
  const dir = join(options.root, UNIT_DIR);
  for (const unit of units) {
    const path = join(dir, unit.name);
    if (existsSync(path) && !readFileSync(path, 'utf8').startsWith(MARKER)) {
      throw new LanplugError(
        'Conflict',
        `${path} exists and was not written by lanplug install; remove or rename it first`,
      );
    }
  }
  // The CNI plugins next: a compiler that is missing stops the install before any unit is written.
  const done: string[] =
    options.cni === null ? [] : installCniExecutables({ root: options.root, dryRun: options.dryRun, ...options.cni });
  const netavark = options.netavark ?? null;
  if (netavark !== null)
    done.push(...installNetavarkPlugins({ root: options.root, dryRun: options.dryRun, ...netavark }));
  for (const unit of units) {
    const path = join(dir, unit.name);
    const link = join(dir, `${unit.wantedBy}.wants`, unit.name);
    if (options.dryRun) {
      done.push(`would write ${path}:\n${unit.text}`, `would link ${link} -> ${join(UNIT_DIR, unit.name)}`);
      continue;
    }
    mkdirSync(dirname(link), { recursive: true, mode: 0o755 });
    writeFileSync(path, unit.text, { mode: 0o644 });
    // A file that was there keeps its mode through a write (one an earlier install made 0600 for --user).
    chmodSync(path, 0o644);
    done.push(`wrote ${path}`);
    rmSync(link, { force: true });
    symlinkSync(join(UNIT_DIR, unit.name), link);
    done.push(`enabled ${unit.name} (${link})`);
  }
  // The service may write only there (ProtectSystem=strict): the state directory must exist before it starts.
  const stateDir = join(options.root, options.settings.stateDir);
  if (!existsSync(stateDir)) {
    if (options.dryRun) done.push(`would make ${stateDir} (mode 0700)`);
    else {
      prepareStateDir(stateDir);
      done.push(`made ${stateDir} (mode 0700)`);
    }
  }
  if (!options.dryRun && systemdRunsHere(options.root)) {
    systemctl(['daemon-reload']);
    const sockets = SOCKET_UNITS.map((s) => s.unit);
    systemctl(['start', ...sockets, SERVICE]);
    done.push(`started ${sockets.join(', ')} and ${SERVICE}`);
  }
  return done;
}

/**
 * A CNI network takes its addresses from the shared etcd pools only when its
 * ipam section says `"shared": true` (docs/cni.md, "Shared pools on etcd");
 * else from this node's own store, as before. One line for `install --cni`
 * with an etcd store, else null.
 */
export function cniStoreWarning(store: StoreChoice): string | null {
  if (store.kind !== 'etcd') return null;
  return 'CNI pods get addresses from the shared etcd pools only where the ipam section says "shared": true; elsewhere from this node\'s own store: give each such CNI configuration a range of its own, outside the shared pools';
}

/** Stops, disables and removes what install wrote; anything else is left alone. */
export function uninstall(options: { root: string; dryRun: boolean }): string[] {
  const done: string[] = [];
  const dir = join(options.root, UNIT_DIR);
  const names = [SERVICE, ...SOCKET_UNITS.map((s) => s.unit)];
  if (!options.dryRun && systemdRunsHere(options.root)) {
    systemctl(['stop', ...names], true);
    done.push(`stopped ${names.join(', ')}`);
  }
  for (const name of names) {
    const path = join(dir, name);
    for (const target of ['multi-user.target', 'sockets.target']) {
      const link = join(dir, `${target}.wants`, name);
      if (isLinkTo(link, join(UNIT_DIR, name))) {
        if (!options.dryRun) rmSync(link);
        done.push(`${options.dryRun ? 'would remove' : 'removed'} ${link}`);
      }
    }
    if (existsSync(path)) {
      if (!readFileSync(path, 'utf8').startsWith(MARKER)) {
        done.push(`kept ${path}: not written by lanplug install`);
        continue;
      }
      if (!options.dryRun) rmSync(path);
      done.push(`${options.dryRun ? 'would remove' : 'removed'} ${path}`);
    }
  }
  if (!options.dryRun && systemdRunsHere(options.root)) systemctl(['daemon-reload']);
  done.push(...uninstallCniExecutables(options.root, options.dryRun));
  done.push(...uninstallNetavarkPlugins(options.root, options.dryRun));
  return done;
}

function isLinkTo(path: string, target: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink() && readlinkSync(path) === target;
  } catch {
    return false;
  }
}

/** systemd is PID 1 of this host (not a chroot or a test root). */
function systemdRunsHere(root: string): boolean {
  return (root === '/' || root === '') && existsSync('/run/systemd/system');
}

function systemctl(args: string[], tolerateFailure = false): void {
  try {
    execFileSync('systemctl', args, { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    if (!tolerateFailure)
      throw new LanplugError(
        'Internal',
        `systemctl ${args.join(' ')} failed: ${err instanceof Error ? err.message : String(err)}`,
      );
  }
}
