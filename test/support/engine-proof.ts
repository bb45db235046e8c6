// How a tagged test (`[engine:<id>]`, engine-behaviours.ts) says in the test runner's output which
// engine it proved its rows on: a diagnostic after its result, which scripts/versions-table reads.
// A lab file reports the engines its Docker hosts ran (with the version each dockerd gave); a
// contract test file names the engine whose bodies it replays.

import { afterEach } from 'node:test';
import { enginesAnswered } from '../lab/engine';
import { engineDiagnostic, tagsIn, type TableEngine } from './engine-behaviours';

let reportingLanes = false;

/** Every tagged test of this file names the engines its Docker hosts ran (useLab calls it). */
export function reportEngineOfTaggedTests(): void {
  if (reportingLanes) return;
  reportingLanes = true;
  afterEach((t) => {
    // a suite has no diagnostics of its own; its tests have
    if (!('diagnostic' in t) || tagsIn(t.name).length === 0) return;
    for (const [engine, dockerd] of enginesAnswered())
      t.diagnostic(engineDiagnostic({ engine, kind: 'lane', dockerd }));
  });
}

/** Every tagged test of this file is a contract test of `engine`: it replays the bodies that engine sends. */
export function replaysEngineBodies(engine: TableEngine): void {
  afterEach((t) => {
    if ('diagnostic' in t && tagsIn(t.name).length > 0) t.diagnostic(engineDiagnostic({ engine, kind: 'contract' }));
  });
}
