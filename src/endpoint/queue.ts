/**
 * One request at a time per network: what makes "requests never interleave
 * on one network" true although some requests wait (a LAN probe, a DHCP
 * exchange). A request whose network is idle starts at once, in the same
 * turn of the event loop; one that arrives while another of its network is
 * in flight starts when that one has ended, whatever its outcome. Requests of
 * different networks never wait for each other.
 */
export class NetworkQueue {
  /** Per network, the end of the last request started or waiting; absent when the network is idle. */
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(networkId: string, request: () => T | Promise<T>): Promise<T> {
    const previous = this.tails.get(networkId);
    const result = previous === undefined ? startNow(request) : previous.then(() => request());
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(networkId, tail);
    void tail.then(() => {
      if (this.tails.get(networkId) === tail) this.tails.delete(networkId);
    });
    return result;
  }

  /** Networks with a request in flight (for tests and the operator's view). */
  get busy(): number {
    return this.tails.size;
  }
}

/** Runs `request` now; a synchronous throw becomes a rejection like an asynchronous one. */
function startNow<T>(request: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(request());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
