// test/e2e/lan-citizen.test.ts on Docker 28.5.
import './engine';
import '../e2e/lan-citizen.test';
