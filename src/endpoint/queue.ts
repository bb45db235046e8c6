/**
 * Which requests wait for which, so that none sees another's half-done state
 * although some wait (a LAN probe, a DHCP exchange):
 *
 * - the requests of one endpoint run one after another, in the order they
 *   came (a Join never overtakes its CreateEndpoint's probe);
 * - a request on a network as a whole (create, delete) runs alone: after
 *   every request of the network already started, before any that comes
 *   later;
 * - requests of different endpoints run side by side: twenty containers
 *   starting at once on a DHCP network wait for twenty exchanges in
 *   parallel, not one after another. What two endpoints could both claim
 *   (a DHCP client id) is reserved before the wait (dhcp-endpoints.ts).
 *
 * A request that waits for nothing starts at once, in the same turn of the
 * event loop. Requests of different networks never wait for each other.
 */
interface NetworkLane {
  /** The end of the last whole-network request; absent when none is pending. */
  whole: Promise<void> | null;
  /** The end of each endpoint's last request. */
  endpoints: Map<string, Promise<void>>;
}

export class NetworkQueue {
  private readonly lanes = new Map<string, NetworkLane>();

  /** `request` of endpoint `endpointId`: after that endpoint's earlier ones and any whole-network request before it. */
  forEndpoint<T>(networkId: string, endpointId: string, request: () => T | Promise<T>): Promise<T> {
    const lane = this.lane(networkId);
    const waits = [lane.whole, lane.endpoints.get(endpointId)].filter(
      (w): w is Promise<void> => w !== null && w !== undefined,
    );
    const result = waits.length === 0 ? startNow(request) : Promise.all(waits).then(() => request());
    const done = settled(result);
    lane.endpoints.set(endpointId, done);
    void done.then(() => {
      if (lane.endpoints.get(endpointId) === done) lane.endpoints.delete(endpointId);
      this.forgetIfIdle(networkId, lane);
    });
    return result;
  }

  /** `request` on the network as a whole: after everything of it already started, before anything later. */
  forNetwork<T>(networkId: string, request: () => T | Promise<T>): Promise<T> {
    const lane = this.lane(networkId);
    const waits = [lane.whole, ...lane.endpoints.values()].filter(
      (w): w is Promise<void> => w !== null && w !== undefined,
    );
    const result = waits.length === 0 ? startNow(request) : Promise.all(waits).then(() => request());
    const done = settled(result);
    lane.whole = done;
    void done.then(() => {
      if (lane.whole === done) lane.whole = null;
      this.forgetIfIdle(networkId, lane);
    });
    return result;
  }

  /** Networks with a request in flight (for tests and the operator's view). */
  get busy(): number {
    return this.lanes.size;
  }

  private lane(networkId: string): NetworkLane {
    let lane = this.lanes.get(networkId);
    if (lane === undefined) {
      lane = { whole: null, endpoints: new Map() };
      this.lanes.set(networkId, lane);
    }
    return lane;
  }

  private forgetIfIdle(networkId: string, lane: NetworkLane): void {
    if (lane.whole === null && lane.endpoints.size === 0 && this.lanes.get(networkId) === lane)
      this.lanes.delete(networkId);
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

/** Resolves when `result` settles, whichever way: what the next request waits for. */
function settled(result: Promise<unknown>): Promise<void> {
  return result.then(
    () => undefined,
    () => undefined,
  );
}
