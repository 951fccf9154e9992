import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

async function run(command: string, args: readonly string[]): Promise<void> {
  try {
    await execFileAsync(command, args);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('openssl is not installed; run `apt-get install openssl` to run the client-certificate tests');
    throw error;
  }
}

export interface IssuedCertificate {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  /** base64url(SHA-256(DER)) as openssl computes it: what an authorization server puts in `cnf["x5t#S256"]`. */
  readonly x5tS256: string;
}

export interface CertificateAuthority {
  readonly certFile: string;
  readonly certPem: Buffer;
  /** A certificate for `subject` (an openssl `-subj`, e.g. `/O=Acme/CN=alice`) signed by this CA. */
  issue(subject: string, name: string): Promise<IssuedCertificate>;
}

/** A P-256 CA made by the openssl binary, in a fresh temp directory. */
export async function makeCertificateAuthority(): Promise<CertificateAuthority> {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-ca-'));
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', caCert,
    '-days', '1', '-subj', '/CN=authgate test CA']);
  return {
    certFile: caCert,
    certPem: await readFile(caCert),
    async issue(subject, name) {
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.crt`);
      await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', subject,
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '1', '-copy_extensions', 'copy']);
      const der = join(dir, `${name}.der`);
      await run('openssl', ['x509', '-in', cert, '-outform', 'DER', '-out', der]);
      const digest = join(dir, `${name}.sha256`);
      await run('openssl', ['dgst', '-sha256', '-binary', '-out', digest, der]);
      return { certPem: await readFile(cert), keyPem: await readFile(key), x5tS256: (await readFile(digest)).toString('base64url') };
    },
  };
}
