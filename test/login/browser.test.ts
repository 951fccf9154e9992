import { describe, expect, it } from 'vitest';
import { isNavigation, passesCsrfCheck, prefersHtml, trustedOrigins } from '../../src/login/browser.js';

const CHROME_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
const FIREFOX_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

describe('isNavigation', () => {
  it.each([
    ['GET', { 'sec-fetch-mode': 'navigate' }, true],
    ['HEAD', { 'sec-fetch-mode': 'navigate' }, true],
    ['GET', { 'sec-fetch-mode': 'navigate', accept: '*/*' }, true],
    ['GET', { accept: CHROME_ACCEPT }, true],
    ['GET', { accept: FIREFOX_ACCEPT }, true],
    ['GET', { accept: 'text/html' }, true],
    // A script: fetch/XHR modes, or an Accept that does not rank HTML first.
    ['GET', { 'sec-fetch-mode': 'cors', accept: CHROME_ACCEPT }, false],
    ['GET', { 'sec-fetch-mode': 'no-cors' }, false],
    ['GET', { 'sec-fetch-mode': 'same-origin', accept: 'text/html' }, false],
    ['GET', { 'sec-fetch-mode': 'websocket' }, false],
    ['GET', { accept: '*/*' }, false],
    ['GET', { accept: 'application/json' }, false],
    ['GET', { accept: 'application/json, text/html;q=0.5' }, false],
    ['GET', { accept: 'text/html;q=0' }, false],
    ['GET', {}, false],
    // X-Requested-With marks a script even when it claims to navigate.
    ['GET', { 'sec-fetch-mode': 'navigate', 'x-requested-with': 'XMLHttpRequest' }, false],
    ['GET', { accept: CHROME_ACCEPT, 'x-requested-with': 'XMLHttpRequest' }, false],
    // Only GET and HEAD navigate to a sign-in.
    ['POST', { 'sec-fetch-mode': 'navigate', accept: CHROME_ACCEPT }, false],
    ['PUT', { accept: CHROME_ACCEPT }, false],
    ['OPTIONS', { accept: CHROME_ACCEPT }, false],
  ])('%s %j → %s', (method, headers, expected) => {
    expect(isNavigation(method, headers)).toBe(expected);
  });
});

describe('prefersHtml', () => {
  it.each([
    ['text/html', true],
    ['TEXT/HTML; charset=utf-8', true],
    ['application/json;q=0.9, text/html', true],
    ['text/html;q=0.8, */*;q=0.8', true],
    ['text/html;q=0.7, */*;q=0.8', false],
    ['text/*', false],
    ['text/html;q=abc', false],
    ['text/html;q=2', false],
    ['', false],
  ])('%j → %s', (accept, expected) => {
    expect(prefersHtml(accept)).toBe(expected);
  });
});

describe('passesCsrfCheck', () => {
  const trusted = trustedOrigins('https://app.example.com', ['https://spa.example.com', '*', 'null']);
  it.each([
    // Safe methods carry no state change: always pass.
    ['GET', {}, true],
    ['HEAD', { origin: 'https://evil.example' }, true],
    ['OPTIONS', {}, true],
    // Unsafe methods: Origin decides when present.
    ['POST', { origin: 'https://app.example.com' }, true],
    ['DELETE', { origin: 'https://spa.example.com' }, true],
    ['POST', { origin: 'https://evil.example' }, false],
    ['PUT', { origin: 'null' }, false],
    ['POST', { origin: 'https://app.example.com.evil.example' }, false],
    ['POST', { origin: 'http://app.example.com' }, false],
    ['POST', { origin: 'https://evil.example', referer: 'https://app.example.com/form' }, false],
    // Without Origin, the Referer's origin.
    ['POST', { referer: 'https://app.example.com/app/form?x=1' }, true],
    ['PATCH', { referer: 'https://evil.example/https://app.example.com/' }, false],
    ['POST', { referer: 'not a url' }, false],
    // Neither: refused.
    ['POST', {}, false],
    ['DELETE', {}, false],
  ])('%s %j → %s', (method, headers, expected) => {
    expect(passesCsrfCheck(method, headers, trusted)).toBe(expected);
  });

  it('never trusts the wildcard or the null origin from the CORS list', () => {
    expect([...trusted]).toEqual(['https://app.example.com', 'https://spa.example.com']);
  });
});
