// The labs this process has created and not destroyed yet, and the process hooks that destroy
// them: on exit, and on SIGINT/SIGTERM (then exit 130/143). A test that throws, or a run that is
// interrupted, leaves no namespace, dockerd or mount behind. The hooks are installed only while
// a lab is alive. Labs register themselves; this file knows them only as things to destroy.

/** What the registry needs of a lab: a synchronous, idempotent destroy that unregisters it. */
export interface LiveLab {
  destroy(): void;
}

const live = new Set<LiveLab>();
let hooksInstalled = false;

function onExit(): void {
  destroyAll();
}

function onSignal(sig: NodeJS.Signals): void {
  try {
    destroyAll();
  } finally {
    process.exit(sig === 'SIGINT' ? 130 : 143);
  }
}

function updateHooks(): void {
  const want = live.size > 0;
  if (want === hooksInstalled) return;
  if (want) {
    process.on('exit', onExit);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  } else {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  hooksInstalled = want;
}

/** A lab was created: destroy it at exit unless it is destroyed first. */
export function registerLab(lab: LiveLab): void {
  live.add(lab);
  updateHooks();
}

/** The lab was destroyed (called from its destroy()). */
export function unregisterLab(lab: LiveLab): void {
  live.delete(lab);
  updateHooks();
}

/** Destroys every lab this process created and has not destroyed yet (synchronous). */
export function destroyAll(): void {
  for (const lab of [...live]) lab.destroy();
}
