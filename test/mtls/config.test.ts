import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCertificateBound, readClientCertificates } from '../../src/config/mtls.js';
import { readSnippet } from '../helpers/config-snippet.js';

const dir = mkdtempSync(join(tmpdir(), 'authgate-mtls-config-'));
writeFileSync(join(dir, 'clients-ca.pem'), '-----BEGIN CERTIFICATE-----\n');

const readTls = (body: string) =>
  readSnippet(`tls: ${body}`, (r, root) => {
    const tls = r.section(r.section(root, ['tls']).slot('tls'), ['client_auth', 'client_ca_file']);
    return readClientCertificates(r, tls.slot('client_auth'), tls.slot('client_ca_file'), dir);
  });

describe('server.tls client certificates', () => {
  it.each(['optional', 'require'] as const)('reads client_auth: %s with its CA file', (mode) => {
    expect(readTls(`{ client_auth: ${mode}, client_ca_file: clients-ca.pem }`)).toEqual({ value: { mode, caFile: join(dir, 'clients-ca.pem') }, problems: [] });
  });

  it('asks for no certificate without client_auth', () => {
    expect(readTls('{}')).toEqual({ value: undefined, problems: [] });
  });

  it.each([
    ['an unknown mode', '{ client_auth: request, client_ca_file: clients-ca.pem }', 'gateway.yaml:1:21: tls.client_auth: "request" is not one of "optional", "require"'],
    ['no CA file', '{ client_auth: require }', 'gateway.yaml:1:6: tls.client_ca_file: required'],
    ['a CA file that does not exist', '{ client_auth: optional, client_ca_file: nope.pem }', `gateway.yaml:1:47: tls.client_ca_file: file not found: ${join(dir, 'nope.pem')}`],
    ['a CA file without client_auth', '{ client_ca_file: clients-ca.pem }', 'gateway.yaml:1:8: tls.client_ca_file: is only used with client_auth: optional or require'],
  ])('names file:line:col and the key for %s', (_name, body, problem) => {
    expect(readTls(body)).toEqual({ value: undefined, problems: [problem] });
  });
});

describe('issuers.<name>.certificate_bound', () => {
  const read = (body: string) => readSnippet(`certificate_bound: ${body}`, (r, root) => readCertificateBound(r, r.section(root, ['certificate_bound']).slot('certificate_bound')));

  it('reads true, and false when absent', () => {
    expect(read('true')).toEqual({ value: true, problems: [] });
    expect(readSnippet('{}', (r, root) => readCertificateBound(r, r.section(root, ['certificate_bound']).slot('certificate_bound')))).toEqual({ value: false, problems: [] });
  });

  it('names file:line:col for a value that is not a boolean', () => {
    expect(read('yes please').problems).toEqual(['gateway.yaml:1:20: certificate_bound: expected true or false, got the string "yes please"']);
  });
});
