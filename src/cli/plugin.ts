/**
 * `lanplug plugin build | upgrade | remove | serve`: lanplug as managed Docker
 * plugins (src/plugin). `serve` is what dockerd runs inside the plugin.
 */
import { dockerSocketPath } from '../api/docker/engine';
import { parseLevel } from '../log';
import { DockerPlugins } from '../plugin/docker-plugins';
import { buildPlugins, removePlugins, upgradePlugins, type BuildInput } from '../plugin/build';
import { managedRoleFromEnv, serveManagedPlugin } from '../plugin/serve';
import { packageVersion } from '../version';
import { parseFlags, UsageError } from './flags';

const DEFAULT_TAG = 'latest';

/** Returns the lines to print; `serve` never returns (the daemon runs until dockerd stops the plugin). */
export async function runPlugin(
  args: readonly string[],
  packageRoot: string,
  dockerHost: string,
): Promise<string[] | null> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'build': {
      const flags = parseFlags('plugin build', rest, {
        values: {
          '--tag': DEFAULT_TAG,
          '--docker-host': dockerHost,
          '--out': '',
          '--state-dir': '',
          '--log-level': '',
        },
        switches: ['--no-enable'],
      });
      const logLevel = flags.value('--log-level');
      if (logLevel !== '' && parseLevel(logLevel) === null)
        throw new UsageError(`--log-level must be one of debug, info, warn, error; got '${logLevel}'`);
      const stateDir = flags.value('--state-dir');
      if (stateDir !== '' && !stateDir.startsWith('/'))
        throw new UsageError(`--state-dir must be an absolute path; got '${stateDir}'`);
      const socket = dockerSocketPath(flags.value('--docker-host'));
      return buildPlugins(
        new DockerPlugins(socket),
        buildInput(flags.value('--tag'), flags.value('--out'), packageRoot),
        { stateSource: stateDir || null, dockerSource: socket, logLevel: logLevel || null },
        !flags.on('--no-enable'),
      );
    }
    case 'upgrade': {
      const flags = parseFlags('plugin upgrade', rest, {
        values: { '--tag': DEFAULT_TAG, '--docker-host': dockerHost, '--out': '' },
      });
      const docker = new DockerPlugins(dockerSocketPath(flags.value('--docker-host')));
      return upgradePlugins(docker, buildInput(flags.value('--tag'), flags.value('--out'), packageRoot));
    }
    case 'remove': {
      const flags = parseFlags('plugin remove', rest, {
        values: { '--tag': DEFAULT_TAG, '--docker-host': dockerHost },
      });
      const lines = await removePlugins(
        new DockerPlugins(dockerSocketPath(flags.value('--docker-host'))),
        flags.value('--tag'),
      );
      return lines.length === 0 ? ['no lanplug plugin to remove'] : lines;
    }
    case 'serve': {
      parseFlags('plugin serve', rest, { values: {} });
      const { role, log } = managedRoleFromEnv(process.env);
      await serveManagedPlugin(role, log);
      return null;
    }
    default:
      throw new UsageError(`lanplug plugin needs one of build, upgrade, remove, serve; got '${sub ?? ''}'`);
  }
}

function buildInput(tag: string, out: string, packageRoot: string): BuildInput {
  if (out !== '' && !out.startsWith('/')) throw new UsageError(`--out must be an absolute path; got '${out}'`);
  return { packageRoot, nodeBinary: process.execPath, version: packageVersion(), tag, outDir: out === '' ? null : out };
}
