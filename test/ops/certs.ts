import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: Buffer;
}

/** A fresh self-signed P-256 certificate for `localhost` and 127.0.0.1, made by the openssl binary. */
export async function makeCertificate(commonName: string): Promise<TestCertificate> {
  const into = await mkdtemp(join(tmpdir(), 'authgate-cert-'));
  const certFile = join(into, 'tls.crt');
  const keyFile = join(into, 'tls.key');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1',
    '-subj', `/CN=${commonName}`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  return { certFile, keyFile, certPem: await readFile(certFile) };
}
