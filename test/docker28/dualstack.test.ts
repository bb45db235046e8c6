// test/e2e/dualstack.test.ts on Docker 28.5.
import './engine';
import '../e2e/dualstack.test';
