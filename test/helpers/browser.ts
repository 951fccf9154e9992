import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's Chromium; playwright-core drives it over CDP and downloads no browser of its own. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

export interface TestBrowser {
  readonly context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/** A real headless Chromium with a fresh, empty profile (no cookies from any other test). */
export async function launchBrowser(executablePath = CHROMIUM_PATH): Promise<TestBrowser> {
  try {
    await access(executablePath);
  } catch {
    throw new Error(`${executablePath} is missing: install the Debian package chromium (apt-get install chromium) to run the browser tests`);
  }
  const profile = await mkdtemp(join(tmpdir(), 'authgate-chromium-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath, headless: true, args: FLAGS, timeout: 30_000,
    });
    return {
      context,
      async close() {
        await context.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
}
