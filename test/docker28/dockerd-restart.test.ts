// test/e2e/dockerd-restart.test.ts on Docker 28.5.
import './engine';
import '../e2e/dockerd-restart.test';
