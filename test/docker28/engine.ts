// Imported first by every file of the Docker 28 lane, before the e2e file it runs again: the labs
// of that file then run sid's dockerd 28.5 (test/lab/engine.ts). First, because node's test runner
// starts a file's `before` hooks while the file is still being imported.
import { setLabEngine } from '../lab/engine';

setLabEngine('docker28');
