/**
 * The daemon's CNI socket: one connection per invocation of a lanplug CNI
 * executable (protocol.ts). Root-only, like the plugin sockets: the
 * directory is made 0700 when lanplug makes it, the socket is 0600.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../../log';
import { removeDeadSocket } from '../docker/server';
import { decodeInvocation, encodeAnswer, MAX_REQUEST_BYTES, type CniAnswer, type CniInvocation } from './protocol';

/**
 * The socket's name in the state directory (beside the control socket), its
 * default place; `lanplug daemon --cni-socket` moves it, and the executables
 * look where they were built to, or at LANPLUG_CNI_SOCKET.
 */
export const CNI_SOCKET_NAME = 'cni.sock';

export class CniServer {
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(
    path: string,
    handle: (invocation: CniInvocation) => Promise<CniAnswer>,
    log: Logger,
  ): Promise<CniServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    await removeDeadSocket(path);
    // The executable half-closes after its request and reads the answer: the answer comes after
    // asynchronous work, so the daemon's side must stay open past the request's end.
    const server = createServer({ allowHalfOpen: true }, (socket) => serve(socket, handle, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    log.info('CNI socket listening', { path });
    return new CniServer(server, path);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function serve(socket: Socket, handle: (invocation: CniInvocation) => Promise<CniAnswer>, log: Logger): void {
  const chunks: Buffer[] = [];
  let size = 0;
  socket.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES) {
      log.warn('CNI request too large; connection closed', { bytes: size });
      socket.destroy();
      return;
    }
    chunks.push(chunk);
  });
  socket.on('end', () => {
    const invocation = decodeInvocation(Buffer.concat(chunks));
    const malformed: CniAnswer = {
      exitCode: 1,
      stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: 5, msg: 'malformed request from the lanplug CNI executable' })}\n`,
    };
    // runCni answers every failure itself; a rejection here would be a bug, answered as one.
    (invocation === null ? Promise.resolve(malformed) : handle(invocation))
      .catch((err: unknown): CniAnswer => ({
        exitCode: 1,
        stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: 999, msg: String(err) })}\n`,
      }))
      .then(
        (answer) => socket.end(encodeAnswer(answer)),
        () => undefined,
      );
  });
  socket.on('error', (err) => log.debug('CNI connection error', { error: String(err) }));
}
