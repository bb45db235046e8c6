/**
 * The `lanplug` command. Arguments are parsed here and nowhere else; each
 * command's work lives in a module of its own.
 */
import { join, resolve } from 'node:path';
import { dockerSocketPath } from '../api/docker/engine';
import { DAEMON_NODE_FLAGS, startDaemon } from '../daemon';
import { versionLine } from '../version';
import { createLogger } from '../log';
import {
  DAEMON_FLAGS,
  daemonArguments,
  DEFAULT_DOCKER_HOST,
  DEFAULT_GRACE_SECONDS,
  DEFAULT_PLUGIN_DIR,
  DEFAULT_STATE_DIR,
  readDaemonFlags,
  seconds,
} from './daemon-flags';
import { ControlClient } from './control-client';
import { formatChecks, runDoctor } from './doctor';
import { doctorCniSocket, installedServiceCommand } from './doctor/cni-socket';
import { parseSince, streamEvents } from './events';
import { parseFlags, UsageError } from './flags';
import { formatGc, runGc } from './gc';
import { formatIdentity } from './identity';
import { cniStoreWarning, install, uninstall } from './install';
import { askListing, filterListing, formatEndpoints, formatIdentities, formatLanDevices } from './ls';
import { askForget } from './forget';
import { runPlugin } from './plugin';
import { askSharedPools, formatSharedPools } from './shared-pools';
import { formatStatus } from './status';

const USAGE = `usage: lanplug <command> [options]

commands:
  daemon     serve the Docker network drivers lanplug-macvlan and lanplug-ipvlan
             [--state-dir DIR] [--plugin-dir DIR] [--log-level debug|info|warn|error]
             [--docker-host unix:///var/run/docker.sock] [--recheck-interval SECONDS (0: off)]
             [--grace-seconds N: a row Docker does not know counts as forgotten once N s old]
             [--cni-socket PATH|off: where lanplug's CNI plugins reach the daemon; default STATE-DIR/cni.sock]
             [--cni-network-idle SECONDS: a CNI network without attachments is removed after this; default 60]
             [--store sqlite|etcd://HOST:PORT,...: where the lanplug IPAM driver's pools live; etcd shares
              them with every host naming the same cluster]  [--host-id NAME: this host in etcd; default hostname]
             [--cacert FILE] [--cert FILE] [--key FILE]: etcd's TLS, as etcdctl
             [--user-file FILE: etcd's NAME:PASSWORD, one line in a file only root reads (mode 0600)]
             [--user NAME:PASSWORD: the same on the command line, where every local user can read it (ps);
              install refuses it]
             [--reclaim-after SECONDS: an unregistered host's silent addresses are reclaimed after this; default 600]
             [--identity-expire DURATION: a lanplug.identity reservation no container held for this long goes
              (90s, 15m, 2h, 30d); default 30d]
             [--metrics-listen ADDRESS:PORT: Prometheus metrics (GET /metrics) there too, e.g. 127.0.0.1:9464;
              always on the control socket]
  status     list the networks, endpoints and leftovers lanplug keeps   [--state-dir DIR]
  ls         every endpoint: network, container, MAC, addresses and their source, lease, host access,
             last conflict (asks the running daemon)   [--json] [--network NAME|ID] [--container NAME|ID]
             [--lan: the LAN devices heard using pool addresses instead, those claiming a container's marked]
             [--identities: the lanplug.identity reservations instead: MAC, addresses, holder or idle time]
             [--state-dir DIR]
  events     what the daemon did and saw: networks and endpoints made and removed, leases acquired, renewed,
             declined, released, conflicts found and defended, announcements, reconcile actions, etcd reachable
             or not (kept in a ring of the last 2,000)   [--json: NDJSON] [--since 90s|15m|2h|1d] [--follow]
             [--state-dir DIR]
  identity   NAME: the MAC, DHCP client id, DUID and hostname --driver-opt lanplug.identity=NAME gives a container
  forget     NETWORK NAME: drop NAME's reservation on NETWORK (its addresses free for anyone); refused while a
             container holds it   [--state-dir DIR]
  gc         reconcile now: remove what nothing owns, retry failed removals, drop rows
             Docker has forgotten   [--state-dir DIR] [--docker-host URL] [--dry-run] [--grace-seconds N]
             [--accept-engine: Docker was reinstalled; the dockerd at --docker-host speaks for every network]
  doctor     check this host: kernel features, dockerd, sockets, state   [--json]
             [--state-dir DIR] [--plugin-dir DIR] [--docker-host URL]
             [--cni-socket PATH|off: the daemon's, when not the installed service's or STATE-DIR/cni.sock]
  install    write and enable systemd units (service + socket activation)
             [--cni: also the CNI plugins lanplug-macvlan, lanplug-ipvlan in /opt/cni/bin (needs cc)]
             [--netavark: also the netavark plugins (Podman 5, 6) in /usr/local/libexec/netavark (needs cc)]
             [--dry-run] [--root DIR] and any daemon option above, checked as the daemon checks it and
             written into the service's command line (paths absolute: the service runs from /)
  uninstall  remove exactly what install wrote (units, CNI and netavark plugins)   [--dry-run] [--root DIR]
  plugin     lanplug as managed Docker plugins lanplug/macvlan:TAG and lanplug/ipvlan:TAG, made offline:
               build    assemble, create and enable both   [--tag latest] [--docker-host URL]
                        [--state-dir DIR] [--log-level LEVEL] [--out DIR: keep the build contexts] [--no-enable]
               upgrade  replace both by this version, keeping names, settings, networks   [--tag latest] [--docker-host URL]
               remove   disable and remove both (the state directory stays)   [--tag latest] [--docker-host URL]
               serve    the plugin's entrypoint, run by dockerd inside the plugin
  version    print lanplug's version and the versions of its state and protocols (also --version)
  help       show this text

defaults: --state-dir ${DEFAULT_STATE_DIR}  --plugin-dir ${DEFAULT_PLUGIN_DIR}  --docker-host ${DEFAULT_DOCKER_HOST}`;

const STATE = { '--state-dir': DEFAULT_STATE_DIR };
const PLUGINS = { '--plugin-dir': DEFAULT_PLUGIN_DIR };
const DOCKER = { '--docker-host': DEFAULT_DOCKER_HOST };

async function runDaemon(args: readonly string[]): Promise<void> {
  const flags = parseFlags('daemon', args, { values: DAEMON_FLAGS });
  const { level, ...settings } = readDaemonFlags(flags);
  const log = createLogger(level);
  if (flags.given('--user'))
    log.warn("the etcd password given by --user is every local user's to read in the process list; use --user-file");
  if (process.getuid?.() !== 0)
    log.warn('not running as root: creating links needs CAP_NET_ADMIN and the plugin directory is root-owned');
  const daemon = await startDaemon({ ...settings, log });
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

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'daemon':
        await runDaemon(rest);
        return -1; // keeps running
      case 'status': {
        const stateDir = parseFlags('status', rest, { values: STATE }).value('--state-dir');
        process.stdout.write(formatStatus(stateDir));
        const shared = await askSharedPools(new ControlClient(stateDir));
        if (shared !== null) process.stdout.write(formatSharedPools(shared));
        return 0;
      }
      case 'ls': {
        const flags = parseFlags('ls', rest, {
          values: { ...STATE, '--network': '', '--container': '' },
          switches: ['--json', '--lan', '--identities'],
        });
        const listing = filterListing(await askListing(flags.value('--state-dir')), {
          network: flags.given('--network') ? flags.value('--network') : null,
          container: flags.given('--container') ? flags.value('--container') : null,
        });
        const lan = flags.on('--lan');
        const identities = flags.on('--identities');
        if (lan && identities) throw new UsageError('ls takes --lan or --identities, not both');
        if (flags.on('--json'))
          process.stdout.write(
            `${JSON.stringify(lan ? listing.lan : identities ? listing.identities : listing.endpoints, null, 2)}\n`,
          );
        else
          process.stdout.write(
            lan ? formatLanDevices(listing) : identities ? formatIdentities(listing) : formatEndpoints(listing),
          );
        return 0;
      }
      case 'events': {
        const flags = parseFlags('events', rest, {
          values: { ...STATE, '--since': '' },
          switches: ['--json', '--follow'],
        });
        await streamEvents(
          flags.value('--state-dir'),
          {
            sinceMs: flags.given('--since') ? parseSince(flags.value('--since')) : null,
            follow: flags.on('--follow'),
            json: flags.on('--json'),
          },
          (text) => process.stdout.write(text),
        );
        return 0;
      }
      case 'gc': {
        const flags = parseFlags('gc', rest, {
          values: { ...STATE, ...DOCKER, '--grace-seconds': DEFAULT_GRACE_SECONDS },
          switches: ['--dry-run', '--accept-engine'],
        });
        const dryRun = flags.on('--dry-run');
        const options = {
          dryRun,
          graceMs: seconds(flags.value('--grace-seconds'), '--grace-seconds') * 1000,
          acceptEngine: flags.on('--accept-engine'),
        };
        const socket = dockerSocketPath(flags.value('--docker-host'));
        process.stdout.write(formatGc(await runGc(flags.value('--state-dir'), socket, options), dryRun));
        return 0;
      }
      case 'doctor': {
        const flags = parseFlags('doctor', rest, {
          values: { ...STATE, ...PLUGINS, ...DOCKER, '--cni-socket': '' },
          switches: ['--json'],
        });
        const stateDir = flags.value('--state-dir');
        const checks = await runDoctor({
          stateDir,
          pluginDir: flags.value('--plugin-dir'),
          dockerSocket: dockerSocketPath(flags.value('--docker-host')),
          cniSocket: doctorCniSocket(
            flags.given('--cni-socket') ? flags.value('--cni-socket') : null,
            stateDir,
            installedServiceCommand(),
          ),
        });
        process.stdout.write(flags.on('--json') ? `${JSON.stringify(checks, null, 2)}\n` : formatChecks(checks));
        return checks.some((c) => c.status === 'fail') ? 1 : 0;
      }
      case 'install': {
        const flags = parseFlags('install', rest, {
          values: { ...DAEMON_FLAGS, '--root': '/' },
          switches: ['--dry-run', '--cni', '--netavark'],
        });
        const root = flags.value('--root');
        // Everything checked before anything is written.
        const daemon = readDaemonFlags(flags, root);
        const cni = flags.on('--cni');
        if (cni && daemon.cniSocket === null)
          throw new UsageError('--cni installs plugins that reach the daemon on its CNI socket; drop --cni-socket off');
        const netavark = flags.on('--netavark');
        if (netavark && daemon.cniSocket === null)
          throw new UsageError(
            '--netavark installs plugins that reach the daemon on its CNI socket; drop --cni-socket off',
          );
        const warning = cni || netavark ? cniStoreWarning(daemon.addressStore) : null;
        if (warning !== null) process.stderr.write(`lanplug: warning: ${warning}\n`);
        const lines = install({
          root,
          dryRun: flags.on('--dry-run'),
          settings: {
            program: [process.execPath, ...DAEMON_NODE_FLAGS, lanplugProgram()],
            daemonArguments: daemonArguments(flags),
            pluginDir: daemon.pluginDir,
            stateDir: daemon.stateDir,
            cniSocket: daemon.cniSocket,
            // etcd's members, and a scraper of --metrics-listen: IPAddressDeny=any would drop both.
            usesIp: daemon.addressStore.kind === 'etcd' || daemon.metricsListen !== null,
          },
          cni: cni && daemon.cniSocket !== null ? { packageRoot: packageRoot(), socket: daemon.cniSocket } : null,
          netavark:
            netavark && daemon.cniSocket !== null ? { packageRoot: packageRoot(), socket: daemon.cniSocket } : null,
        });
        process.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }
      case 'uninstall': {
        const flags = parseFlags('uninstall', rest, { values: { '--root': '/' }, switches: ['--dry-run'] });
        const lines = uninstall({ root: flags.value('--root'), dryRun: flags.on('--dry-run') });
        process.stdout.write(`${lines.length === 0 ? 'nothing to remove' : lines.join('\n')}\n`);
        return 0;
      }
      case 'plugin': {
        const lines = await runPlugin(rest, packageRoot(), DEFAULT_DOCKER_HOST);
        if (lines === null) return -1; // serving until dockerd stops the plugin
        process.stdout.write(`${lines.join('\n')}\n`);
        return 0;
      }
      case 'identity': {
        const [name, ...more] = rest;
        if (name === undefined || more.length > 0) throw new UsageError('identity takes one NAME');
        process.stdout.write(formatIdentity(name));
        return 0;
      }
      case 'forget': {
        const [network, name, ...more] = rest;
        if (network === undefined || name === undefined || network.startsWith('--') || name.startsWith('--'))
          throw new UsageError('forget takes NETWORK NAME');
        const flags = parseFlags('forget', more, { values: STATE });
        process.stdout.write(await askForget(flags.value('--state-dir'), network, name));
        return 0;
      }
      case 'version':
      case '--version':
        process.stdout.write(`${versionLine()}\n`);
        return 0;
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

/** The package this code runs from (dist/src/cli -> the root holding bin/ and native/). */
function packageRoot(): string {
  return resolve(__dirname, '..', '..', '..');
}

/** The `bin/lanplug` script this code runs from: what the service's ExecStart runs. */
function lanplugProgram(): string {
  return join(packageRoot(), 'bin', 'lanplug');
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code);
  });
}
