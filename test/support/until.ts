// Waiting in a unit test for what a timer of the code under test does: poll the effect instead of
// sleeping a fixed time, so a loaded machine (CI's 2 cores) makes the test slower, never wrong.
// The limit is only there to end a test whose effect never comes.

/** Polls `check` every few ms until it holds; throws naming `what` after `withinMs`. */
export async function until(check: () => boolean, what: string, withinMs = 5_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still not ${what} after ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
