// The seed's bridge tutorial (test/e2e/seed-bridge.test.ts) on Docker 28.5.
import './engine';
import '../e2e/seed-bridge.test';
