/**
 * `lanplug plugin build | upgrade | remove`: lanplug as managed Docker
 * plugins, made offline from this installation. Each kind's build context
 * (config.json + rootfs) is assembled in a work directory, checked in a
 * chroot, and handed to dockerd (`docker plugin create`, no registry).
 *
 * Upgrade: Docker's own `plugin upgrade` pulls from a registry; lanplug's
 * keeps the plugin's name (the driver name every network stores), so it
 * builds the new contexts first, then per plugin disables it (forced: the
 * containers keep their links, the kernel holds them), removes it, creates
 * the new one, puts the old settings back and enables it. The state
 * directory is the host's: networks and endpoints carry over, and the new
 * daemon moves its schema forward (or refuses a downgrade) at start.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LanplugError } from '../errors';
import { DRIVER_KINDS, type DriverKind } from '../model/network';
import { isLocked, lockHolder } from '../state/lock';
import { prepareStateDir } from '../state/state-dir';
import type { DockerPlugins, PluginView } from './docker-plugins';
import {
  DEFAULT_DOCKER_SOURCE,
  DEFAULT_STATE_SOURCE,
  MOUNT_DOCKER,
  MOUNT_STATE,
  pluginConfig,
  pluginName,
} from './manifest';
import { assembleRootfs, checkRootfs } from './rootfs';
import { PLUGIN_ENV } from './serve';

export interface BuildInput {
  packageRoot: string;
  nodeBinary: string;
  version: string;
  tag: string;
  /** Keep the build contexts here; null: a temporary directory, removed afterwards. */
  outDir: string | null;
}

/** What `docker plugin set` gets before the first enable (null: the config's default). */
export interface PluginSettings {
  stateSource: string | null;
  dockerSource: string | null;
  logLevel: string | null;
}

interface Context {
  kind: DriverKind;
  name: string;
  dir: string;
}

const TAG = /^[\w][\w.-]{0,127}$/;

/** Builds and creates both plugins; with `enable`, sets them up and enables them. Returns what it did, line by line. */
export async function buildPlugins(
  docker: DockerPlugins,
  input: BuildInput,
  settings: PluginSettings,
  enable: boolean,
): Promise<string[]> {
  checkTag(input.tag);
  for (const kind of DRIVER_KINDS) {
    const existing = await docker.inspect(pluginName(kind, input.tag));
    if (existing !== null)
      throw new LanplugError(
        'Conflict',
        `plugin ${existing.name} exists already; to replace it with this build: lanplug plugin upgrade --tag ${input.tag}`,
      );
  }
  // The mount's source must exist when a plugin is enabled, whenever that is.
  prepareStateDir(settings.stateSource ?? DEFAULT_STATE_SOURCE);
  return withContexts(input, async (contexts, lines) => {
    for (const context of contexts) {
      await docker.create(context.name, context.dir);
      lines.push(`created ${context.name}`);
      await docker.set(context.name, settingsArgs(settings));
      if (enable) lines.push(await timedEnable(docker, context.name));
    }
    if (!enable)
      lines.push(`enable with: docker plugin enable ${contexts.map((c) => c.name).join(' && docker plugin enable ')}`);
  });
}

/** Replaces both plugins by this build, keeping their names, settings and enabled state. */
export async function upgradePlugins(docker: DockerPlugins, input: BuildInput): Promise<string[]> {
  checkTag(input.tag);
  const old = new Map<DriverKind, PluginView>();
  for (const kind of DRIVER_KINDS) {
    const view = await docker.inspect(pluginName(kind, input.tag));
    if (view !== null) old.set(kind, view);
  }
  if (old.size === 0)
    throw new LanplugError(
      'NotFound',
      `no plugin lanplug/*:${input.tag} to upgrade; create them with: lanplug plugin build --tag ${input.tag}`,
    );
  // A plugin missing (an earlier upgrade stopped half-way) is made with its sibling's settings: one
  // state directory for the pair, never the default beside a custom one.
  const reference = [...old.values()][0] ?? null;
  const state = reference?.mounts.find((m) => m.name === MOUNT_STATE)?.source ?? DEFAULT_STATE_SOURCE;
  // The plugin that does not hold the state directory goes first: the other serves on until its own turn.
  const holder = isLocked(state) ? lockHolder(state)?.owner : undefined;
  const holderName = holder?.kind === 'plugin' ? holder.name : null;
  return withContexts(input, async (contexts, lines) => {
    contexts.sort((a, b) => Number(a.name === holderName) - Number(b.name === holderName));
    for (const context of contexts) {
      const previous = old.get(context.kind) ?? null;
      const settings = keptSettings(previous ?? reference);
      if (previous !== null) {
        if (previous.enabled) await docker.disable(context.name, true);
        await docker.remove(context.name, true);
      }
      try {
        await docker.create(context.name, context.dir);
        await docker.set(context.name, settings);
        lines.push(`replaced ${context.name}${previous === null ? ' (was missing)' : ''}`);
        if (previous?.enabled !== false) lines.push(await timedEnable(docker, context.name));
      } catch (err) {
        throw new LanplugError(
          'Internal',
          `${context.name} was removed and its new build not made ready (${err instanceof Error ? err.message : String(err)}); run lanplug plugin upgrade again: it makes the missing plugin with its sibling's settings`,
        );
      }
    }
  });
}

/** Disables (forced) and removes both plugins. The state directory stays: it is the host's. */
export async function removePlugins(docker: DockerPlugins, tag: string): Promise<string[]> {
  checkTag(tag);
  const lines: string[] = [];
  for (const kind of DRIVER_KINDS) {
    const name = pluginName(kind, tag);
    const view = await docker.inspect(name);
    if (view === null) continue;
    if (view.enabled) await docker.disable(name, true);
    await docker.remove(name, true);
    lines.push(`removed ${name}`);
  }
  return lines;
}

async function withContexts(
  input: BuildInput,
  use: (contexts: Context[], lines: string[]) => Promise<void>,
): Promise<string[]> {
  const work = input.outDir ?? mkdtempSync(join(tmpdir(), 'lanplug-plugin-'));
  const lines: string[] = [];
  try {
    const contexts = DRIVER_KINDS.map((kind): Context => {
      const dir = join(work, kind);
      mkdirSync(dir, { recursive: true });
      const name = pluginName(kind, input.tag);
      writeFileSync(
        join(dir, 'config.json'),
        `${JSON.stringify(pluginConfig(kind, input.tag, input.version), null, 2)}\n`,
      );
      const bytes = assembleRootfs(join(dir, 'rootfs'), {
        packageRoot: input.packageRoot,
        nodeBinary: input.nodeBinary,
        buildLabel: `lanplug ${input.version} ${name} built ${new Date().toISOString()}`,
      });
      checkRootfs(join(dir, 'rootfs'));
      lines.push(`built ${name} in ${dir} (${Math.round(bytes / 1e6)} MB)`);
      return { kind, name, dir };
    });
    await use(contexts, lines);
    return lines;
  } finally {
    if (input.outDir === null) rmSync(work, { recursive: true, force: true });
  }
}

async function timedEnable(docker: DockerPlugins, name: string): Promise<string> {
  const started = process.hrtime.bigint();
  await docker.enable(name);
  return `enabled ${name} in ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(2)} s`;
}

function settingsArgs(settings: PluginSettings): string[] {
  const args: string[] = [];
  if (settings.stateSource !== null && settings.stateSource !== DEFAULT_STATE_SOURCE)
    args.push(`${MOUNT_STATE}.source=${settings.stateSource}`);
  if (settings.dockerSource !== null && settings.dockerSource !== DEFAULT_DOCKER_SOURCE)
    args.push(`${MOUNT_DOCKER}.source=${settings.dockerSource}`);
  if (settings.logLevel !== null) args.push(`${PLUGIN_ENV.log}=${settings.logLevel}`);
  return args;
}

/** What the user set on the old plugin and the new one understands. */
function keptSettings(view: PluginView | null): string[] {
  if (view === null) return [];
  const kept = view.env.filter((entry) => entry.startsWith(`${PLUGIN_ENV.log}=`));
  for (const mount of view.mounts) {
    if (mount.name === MOUNT_STATE || mount.name === MOUNT_DOCKER) kept.push(`${mount.name}.source=${mount.source}`);
  }
  return kept;
}

function checkTag(tag: string): void {
  if (!TAG.test(tag))
    throw new LanplugError('InvalidArgument', `--tag must be a Docker tag (letters, digits, _ . -); got '${tag}'`);
}
