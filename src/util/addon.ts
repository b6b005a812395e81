// The project's N-API addons (binding.gyp: s3zfuse, s3zfile, s3zproc), found where
// `npm run build:native` puts them and loaded once each, on first use, so that commands
// that need none of them run without them. Each caller says what a missing addon means.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type AddonName = 's3zfuse' | 's3zfile' | 's3zproc';

export function addonPath(name: AddonName): string {
  return fileURLToPath(new URL(`../../build/Release/${name}.node`, import.meta.url));
}

const loaded = new Map<AddonName, unknown>();

/** The addon's exports; throws what `require` threw when it is missing or broken. */
export function loadAddon<T>(name: AddonName): T {
  if (!loaded.has(name)) loaded.set(name, createRequire(import.meta.url)(addonPath(name)));
  return loaded.get(name) as T;
}
