// test/e2e/ipam.test.ts on Docker 28.5.
import './engine';
import '../e2e/ipam.test';
