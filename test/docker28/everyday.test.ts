// test/e2e/everyday.test.ts on Docker 28.5.
import './engine';
import '../e2e/everyday.test';
