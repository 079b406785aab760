/** Which entry point `bin/memsync.js` runs for the package rooted at `root` (see entry.js). */
export declare const pickEntry: (root: string) => {
  readonly kind: "bundle" | "sources"
  readonly path: string
}
