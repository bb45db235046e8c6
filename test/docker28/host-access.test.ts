// test/e2e/host-access.test.ts on Docker 28.5.
import './engine';
import '../e2e/host-access.test';
