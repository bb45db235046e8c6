// test/e2e/dhcp.test.ts on Docker 28.5.
import './engine';
import '../e2e/dhcp.test';
