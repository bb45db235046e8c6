// test/e2e/dhcp-ipam.test.ts on Docker 28.5.
import './engine';
import '../e2e/dhcp-ipam.test';
