/** `lanplug doctor`'s CNI checks: lanplug's CNI executables, where installed, and the daemon's CNI socket. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { decodeAnswer, encodeInvocation } from '../../api/cni/protocol';
import { CNI_BIN_DIRS, CNI_EXECUTABLES } from '../../install/cni';
import type { Add, DoctorOptions } from './check';

/** The CNI plugins, when installed: lanplug's, runnable, and the daemon's CNI socket answering. */
export async function cniChecks(options: DoctorOptions, add: Add): Promise<void> {
  const installed = CNI_BIN_DIRS.flatMap((dir) => CNI_EXECUTABLES.map((name) => join(dir, name))).filter((path) =>
    existsSync(path),
  );
  if (installed.length === 0) {
    add(
      'cni',
      'ok',
      'CNI plugins not installed (`lanplug install --cni` adds them for Podman, containerd, Kubernetes)',
    );
    return;
  }
  for (const path of installed) {
    const version = spawnSync(path, [], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8', timeout: 5_000 });
    if (version.status !== 0 || !version.stdout.includes('supportedVersions'))
      add(`cni ${path}`, 'fail', `${path} does not answer VERSION`, 'lanplug install --cni');
  }
  const socket = options.cniSocket;
  if (socket === null) {
    add(
      'cni',
      'fail',
      `${installed.join(', ')} installed, but the daemon runs with --cni-socket off: every CNI ADD fails with code 11`,
      'lanplug install --cni (without --cni-socket off)',
    );
    return;
  }
  const answer = await askCniSocket(socket).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
  if (answer === true) add('cni', 'ok', `${installed.join(', ')} installed; the daemon answers on ${socket}`);
  else
    add(
      'cni',
      'fail',
      `${installed.join(', ')} installed, but ${socket} does not answer (${answer}): every CNI ADD fails with code 11`,
      'systemctl restart lanplug (or: lanplug daemon)',
    );
}

/** A VERSION call over the CNI socket, as the executable makes it. */
export function askCniSocket(path: string): Promise<true | string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no answer in 3 s'));
    }, 3_000);
    socket.on('connect', () =>
      socket.end(encodeInvocation({ env: new Map([['CNI_COMMAND', 'VERSION']]), stdin: '{}' })),
    );
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('end', () => {
      clearTimeout(timer);
      const answer = decodeAnswer(Buffer.concat(chunks));
      resolve(answer?.exitCode === 0 ? true : `answered ${answer === null ? 'garbage' : `exit ${answer.exitCode}`}`);
    });
  });
}
