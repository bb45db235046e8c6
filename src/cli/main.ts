/**
 * The `lanplug` command. Arguments are parsed here and nowhere else.
 */
import { createLogger, parseLevel, type Level } from '../log';
import { startDaemon } from '../daemon';
import { shortId } from '../driver/names';
import { formatPrefix } from '../net/address';
import { SqliteStore } from '../state/sqlite';

const USAGE = `usage: lanplug <command> [options]

commands:
  daemon [--state-dir DIR] [--plugin-dir DIR] [--log-level debug|info|warn|error]
         serve the Docker network drivers lanplug-macvlan and lanplug-ipvlan
         (defaults: --state-dir /var/lib/lanplug --plugin-dir /run/docker/plugins)
  status [--state-dir DIR]
         list the networks and endpoints lanplug keeps
  help   show this text`;

export const DEFAULT_STATE_DIR = '/var/lib/lanplug';
export const DEFAULT_PLUGIN_DIR = '/run/docker/plugins';

interface DaemonArgs {
  stateDir: string;
  pluginDir: string;
  level: Level;
}

class UsageError extends Error {}

export function parseDaemonArgs(args: readonly string[]): DaemonArgs {
  const parsed: DaemonArgs = { stateDir: DEFAULT_STATE_DIR, pluginDir: DEFAULT_PLUGIN_DIR, level: 'info' };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i] ?? '';
    const [name, inline] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const value = inline ?? args[++i];
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`);
    switch (name) {
      case '--state-dir':
        parsed.stateDir = value;
        break;
      case '--plugin-dir':
        parsed.pluginDir = value;
        break;
      case '--log-level': {
        const level = parseLevel(value);
        if (level === null) throw new UsageError(`--log-level must be one of debug, info, warn, error; got '${value}'`);
        parsed.level = level;
        break;
      }
      default:
        throw new UsageError(`unknown option '${name}' for lanplug daemon`);
    }
  }
  return parsed;
}

async function runDaemon(args: readonly string[]): Promise<void> {
  const parsed = parseDaemonArgs(args);
  const log = createLogger(parsed.level);
  if (process.getuid?.() !== 0) {
    log.warn('not running as root: creating links needs CAP_NET_ADMIN and the plugin directory is root-owned');
  }
  const daemon = await startDaemon({ stateDir: parsed.stateDir, pluginDir: parsed.pluginDir, log });
  const shutdown = (signal: string): void => {
    log.info('shutting down', { signal });
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('shutdown failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

function runStatus(args: readonly string[]): number {
  let stateDir = DEFAULT_STATE_DIR;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--state-dir' && args[i + 1] !== undefined) stateDir = args[++i] ?? stateDir;
    else throw new UsageError(`unknown option '${args[i] ?? ''}' for lanplug status`);
  }
  const store = SqliteStore.openReadOnly(stateDir);
  try {
    const networks = store.listNetworks();
    if (networks.length === 0) process.stdout.write('no lanplug networks\n');
    for (const { spec, parentCreated } of networks) {
      const mode = spec.mode.kind === 'macvlan' ? spec.mode.mode : `${spec.mode.mode}/${spec.mode.flag}`;
      const subnets = [...spec.ipv4, ...spec.ipv6].map((s) => formatPrefix(s.pool)).join(',');
      process.stdout.write(
        `${shortId(spec.networkId)}  lanplug-${spec.mode.kind}  mode=${mode}  parent=${spec.parent.name}${parentCreated ? ' (created by lanplug)' : ''}  subnets=${subnets || '-'}${spec.internal ? '  internal' : ''}\n`,
      );
      for (const ep of store.listEndpoints(spec.networkId)) {
        const addresses = [ep.ipv4, ep.ipv6].flatMap((a) => (a === null ? [] : [formatPrefix(a)])).join(',');
        process.stdout.write(`  endpoint ${shortId(ep.endpointId)}  link=${ep.linkName}  mac=${ep.mac ?? '-'}  ${addresses}\n`);
      }
    }
  } finally {
    store.close();
  }
  return 0;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'daemon':
        await runDaemon(rest);
        return -1; // keeps running
      case 'status':
        return runStatus(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`lanplug: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`lanplug: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code);
  });
}
