// The meeting's invite secret: 32 random bytes, base64url, carried only in
// the link's fragment (`#s=…`), which browsers never send to the server.
// Members use it to verify that a joiner had the link (docs/security.md §4).

import { fromBase64, toBase64Url } from './bytes';

const MIN_SECRET_BYTES = 16;

/** The secret in this page's URL, or null if the link has none (or a broken one). */
export function secretFromUrl(hash: string = location.hash): Uint8Array | null {
  const params = new URLSearchParams(hash.replace(/^#/, ''));
  const value = params.get('s');
  if (!value || !/^[A-Za-z0-9_-]+$/.test(value)) return null;
  try {
    const bytes = fromBase64(value);
    return bytes.length >= MIN_SECRET_BYTES ? bytes : null;
  } catch {
    return null;
  }
}

/** Writes a secret the E2EE session made up into the address bar, so "Copy invite link" carries it. */
export function putSecretInUrl(secret: Uint8Array): void {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  params.set('s', toBase64Url(secret));
  history.replaceState(history.state, '', `${location.pathname}${location.search}#${params.toString()}`);
}
