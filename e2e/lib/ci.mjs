// Missing prerequisites: a skip outside CI, a failure in CI.
//
// A skipped test passes the run, so on a CI machine (CI=true) a test whose
// prerequisite is missing (a browser, a binary, a network) must fail and say
// why instead. Use both halves:
//   const missing = haveX ? null : 'X is not installed';
//   describe('…', { skip: skipOutsideCI(missing) }, () => {
//     before(() => { failIfMissing(missing); … });

export const CI = ['true', '1', 'yes'].includes(process.env.CI ?? '');

/** The `skip` option for a describe()/test(): the reason outside CI, else false. */
export function skipOutsideCI(missing) {
  return missing && !CI ? missing : false;
}

/** Throws when a prerequisite is missing (reached only in CI, where nothing is skipped). */
export function failIfMissing(missing) {
  if (missing) throw new Error(`${missing} (CI=true: a missing prerequisite fails the test instead of skipping it)`);
}
